"""The Docker engine as the plugin sees it: one client, this session's identity, its labels.

Everything the plugin creates carries `labels()`; everything it removes is found through them,
and a resource is only ever reaped when the session that owns it is provably dead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pytest_dcfire.errors import EngineUnavailable

if TYPE_CHECKING:  # docker loads when the engine is first reached: the plugin's import is cheap
    import docker

LABEL = "io.github.pytest-dcfire"
L_SESSION = f"{LABEL}.session"
L_HOST = f"{LABEL}.host"
L_PID = f"{LABEL}.pid"
L_BOOT = f"{LABEL}.pid-start"
L_ROLE = f"{LABEL}.role"
L_SITE = f"{LABEL}.site"
L_SERVICE = f"{LABEL}.service"
L_ADOPTED = f"{LABEL}.adopted"
#: The pytest-xdist worker (`gw0`...) or `main`: each worker owns a separate copy.
L_WORKER = f"{LABEL}.worker"
#: On what an xdist worker makes under `dcfire_share = session` (its helper): the shared
#: session it attached to, so that the controller can reap a worker that died.
L_SHARED = f"{LABEL}.shared"
#: On everything of a system that outlives its session: `keep` (--dcfire-keep: kept, never
#: reused) or `reuse` (--dcfire-reuse: kept for the next session, runtime/reuse.py). Whoever
#: cleans up after a dead session undoes the faults of such a system but removes it only when
#: it is not reusable (no live reuse record younger than its TTL; see runtime/reaper.py).
L_RETAIN = f"{LABEL}.retain"
RETAIN_KEEP = "keep"
RETAIN_REUSE = "reuse"
#: A reusable system's owner start time lives here instead of under `L_BOOT`, so that a
#: cleanup judging liveness by pid alone (an older plugin version on the same engine) never
#: removes a system kept on purpose; this version's reaper reads both, and the reuse
#: record's TTL decides (runtime/reuse.py).
L_REUSE_BOOT = f"{LABEL}.reuse.pid-start"

#: On the helper: what its agent does when the session's process dies (`protocol.
#: OnOwnerDeath`): "remove" everything of the session, or "undo-faults" only (the system
#: is kept: `--dcfire-keep`, and any session whose system outlives it).
L_ON_OWNER_DEATH = f"{LABEL}.on-owner-death"

#: Threads that share one client (wave starts, cuts, health checks) each need a connection.
CLIENT_POOL_SIZE = 64


def _process_start_token(pid: int) -> str:
    """The kernel's start time of `pid`, so that a recycled pid is not taken for the owner.
    (The helper's agent has its own copy, `agent.procs.start_token`: the agent is standalone
    and the plugin's import must not load the faults package.)"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    # Field 22 (starttime) comes after the parenthesised command, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class SessionIdentity:
    """Who owns a resource: a random id plus the pid (and its start time) on a host."""

    id: str
    host: str
    pid: int
    pid_start: str
    worker: str = "main"
    #: The shared session this one attached to (`dcfire_share = session`), if any.
    shared: str = ""
    #: `keep` or `reuse` when what this session makes outlives it (`L_RETAIN`), else "".
    retain: str = ""

    @classmethod
    def new(cls, worker: str = "main", shared: str = "", retain: str = "") -> SessionIdentity:
        pid = os.getpid()
        return cls(
            id="dcf" + uuid.uuid4().hex[:8],
            host=socket.gethostname(),
            pid=pid,
            pid_start=_process_start_token(pid),
            worker=worker,
            shared=shared,
            retain=retain,
        )

    def resumed(self, session: str) -> SessionIdentity:
        """This process taking over the kept system of `session` (--dcfire-reuse): what it
        makes from now on carries that session's id, and this process's pid."""
        return dataclasses.replace(self, id=session, retain=RETAIN_REUSE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "worker": self.worker,
            # A reusable shared copy's objects are checked without their pid labels.
            "retain": self.retain,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionIdentity:
        return cls(
            id=str(data["id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            pid_start=str(data["pid_start"]),
            worker=str(data.get("worker", "main")),
            retain=str(data.get("retain", "")),
        )

    def labels(self, role: str, **extra: str) -> dict[str, str]:
        labels = {
            L_SESSION: self.id,
            L_HOST: self.host,
            L_PID: str(self.pid),
            L_BOOT: self.pid_start,
            L_ROLE: role,
            L_WORKER: self.worker,
        }
        if self.shared:
            labels[L_SHARED] = self.shared
        if self.retain:
            labels[L_RETAIN] = self.retain
        if self.retain == RETAIN_REUSE:
            labels[L_BOOT], labels[L_REUSE_BOOT] = "", self.pid_start
        labels.update({f"{LABEL}.{k}": v for k, v in extra.items()})
        return labels

    def foreign_labels(self, labels: dict[str, str], role: str) -> list[str]:
        """The labels by which an object of `role` is not this session's (empty: it is).
        A reusable system is made and then used by several processes: which one made an
        object (its pid labels) does not matter there."""
        expected = self.labels(role)
        if self.retain == RETAIN_REUSE:
            for key in (L_PID, L_BOOT, L_REUSE_BOOT):
                expected.pop(key, None)
        return sorted(k for k, v in expected.items() if labels.get(k) != v)

    def name(self, *parts: str) -> str:
        """A Docker object name unique to this session: `dcf1a2b3c4d-site-svc`."""
        return "-".join((self.id, *parts)).replace("@", "-at-")

    @staticmethod
    def is_dead(labels: dict[str, str]) -> bool:
        """True only when the owner ran on this host and that process is gone.

        Resources of sessions on other hosts (a shared remote engine) are never judged dead.
        """
        if labels.get(L_HOST) != socket.gethostname():
            return False
        try:
            pid = int(labels.get(L_PID, ""))
        except ValueError:
            return False
        start = labels.get(L_BOOT, "") or labels.get(L_REUSE_BOOT, "")
        if not start:
            return False
        return _process_start_token(pid) != start


def docker_host_address(base_url: str) -> str:
    """The host on which ports that containers publish can be reached from this process."""
    parsed = urlparse(base_url)
    if parsed.scheme in ("tcp", "https", "http", "ssh") and parsed.hostname:
        return parsed.hostname
    return "127.0.0.1"


@dataclass
class Engine:
    """One docker-py client shared by every thread of the session, plus retries for hiccups."""

    client: docker.DockerClient
    session: SessionIdentity
    #: True when containers' bridge addresses are routable from this process (local engine).
    local: bool = True
    host_address: str = "127.0.0.1"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def connect(cls, session: SessionIdentity, timeout: float = 30.0) -> Engine:
        """Reach the engine named by DOCKER_HOST (or the local socket), or say why not."""
        import docker
        import requests.exceptions

        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        try:
            client = docker.from_env(timeout=int(timeout), max_pool_size=CLIENT_POOL_SIZE)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(
                f"no Docker engine at {where} (DOCKER_HOST): {_short(exc)}; "
                "start the engine or set DOCKER_HOST to a reachable one "
                "(unix:///var/run/docker.sock, tcp://HOST:PORT, ssh://USER@HOST)"
            ) from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise EngineUnavailable(
                f"no Docker engine at {where} (DOCKER_HOST): {_short(exc)}"
            ) from None
        except (ValueError, TypeError) as exc:
            # docker-py and urllib parse DOCKER_HOST lazily: `tcp://host:notaport` raises here.
            raise EngineUnavailable(
                f"no Docker engine at {where} (DOCKER_HOST): not a valid address ({_short(exc)}); "
                "use unix:///var/run/docker.sock, tcp://HOST:PORT or ssh://USER@HOST"
            ) from None
        base_url = str(client.api.base_url)
        host = docker_host_address(where if "://" in where else base_url)
        local = not urlparse(where).scheme.startswith(("tcp", "ssh", "http"))
        return cls(client=client, session=session, local=local, host_address=host)

    def retry(self, fn: Callable[[], Any], attempts: int = 4) -> Any:
        """Run an engine call again when the engine hiccups (connection reset, 5xx busy)."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.1, max=2),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        ):
            with attempt:
                return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def owned(self, kind: str) -> Iterator[Any]:
        """Containers, networks or volumes carrying this session's id."""
        flt = {"label": f"{L_SESSION}={self.session.id}"}
        yield from _list(self.client, kind, flt)

    def close(self) -> None:
        self.client.close()


def _is_transient(exc: BaseException) -> bool:
    """Connection hiccups and 'busy' answers are worth another try; real refusals are not."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        return status >= 500 and ("in progress" in str(exc) or "busy" in str(exc).lower())
    return False


def _list(client: docker.DockerClient, kind: str, flt: dict[str, Any]) -> list[Any]:
    if kind == "containers":
        return list(client.containers.list(all=True, filters=flt, ignore_removed=True))
    if kind == "networks":
        return list(client.networks.list(filters=flt))
    if kind == "volumes":
        return list(client.volumes.list(filters=flt))
    raise ValueError(kind)


_ERRNO = re.compile(r"\[Errno (\d+)\] ([^\"')]+)|(\w+Error)\((\d+), '([^']+)'\)")


def _short(exc: BaseException) -> str:
    """The first line of `exc`, or just the OS reason buried in urllib3's retry message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    found = _ERRNO.search(text)
    if found and ("Max retries" in text or "Connection aborted" in text):
        if found.group(1):
            return f"{found.group(2).strip()} (errno {found.group(1)})"
        return f"{found.group(5)} (errno {found.group(4)})"
    return text[:300]


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0
