"""The session's helper container and the client of the agent that runs inside it.

One helper per session does every host-side action (netns cuts, loop devices, freezes,
kills) on the engine's own host, so a remote DOCKER_HOST burns the same way as a local one
and no command ever runs on the test machine. It is *not* `--privileged` (refused on some
engines): it names the capabilities it needs, shares the host pid namespace (to reach
containers' netns through /proc/<pid>), may create and use loop devices (`b 7:* rmw`,
/dev/loop-control) and has no network of its own.

Its main process only sleeps. The agent (the `agent` package, baked into the helper image
as `dcfire_agent`) is started once with `docker exec`, and the attached socket of that exec
is a JSON-lines channel (stdout arrives in docker's 8-byte multiplexed frames because there
is no tty). Requests and replies are typed in `agent.protocol`: `helper.call(CUT,
CutRequest(...))` returns a `Reply[CutReply]`.
Closing that socket, which the kernel does when pytest dies even by SIGKILL, makes the
engine close the agent's stdin: the agent's dead-man switch then undoes every cut and
thaws every pool, and once the session's process is provably gone it removes everything of
the session (its janitor container does the engine's side), unless the helper was made
with `keep_system=True` (`--dcfire-keep`): then only the faults are undone. The helper's
label `io.github.pytest-dcfire.on-owner-death` (`remove` or `undo-faults`) says which.

If the helper or its agent dies mid-session, the next request starts a new one (removing
the dead container by id); the new agent adopts the journal on the session's state volume,
so a restore still works. Every request is idempotent for that reason.

The image is built on first use from `helper/Dockerfile` plus every file of the agent package
(a context made in memory) and tagged with the plugin version and a hash of all of them, so
a change to any file rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import docker.errors

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    AGENT_MODULE,
    REAP,
    SHUTDOWN,
    STATUS,
    UNCUT_FOREIGN,
    Empty,
    Hello,
    Op,
    ReapRequest,
    StatusReply,
    UncutForeignRequest,
    WireTarget,
)
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.runtime.engine import (
    L_ON_OWNER_DEATH,
    L_ROLE,
    L_SESSION,
    LABEL,
    Engine,
    SessionIdentity,
    monotonic_ms,
)
from pytest_dcfire.runtime.reaper import reap_dead_sessions

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "helper" / "Dockerfile"
#: The agent package; copied into the image as AGENT_MODULE under AGENT_HOME.
AGENT_DIR = HERE / "agent"
AGENT_HOME = "/opt/dcfire"

CAPABILITIES = ("NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_CHROOT", "DAC_OVERRIDE", "MKNOD")
SECURITY_OPT = ("apparmor=unconfined", "seccomp=unconfined")
#: Seconds to wait for one agent answer (mkfs of a big pool is the slowest request).
REQUEST_TIMEOUT = 120.0
STATE_ROOT = "/dcfire"
#: Seconds between liveness checks while waiting for an answer.
POLL_S = 0.5

Progress = Callable[[str], None]
Q = TypeVar("Q")
R = TypeVar("R")


class HelperUnavailable(FireError):
    """The engine refused to run the helper (capabilities, devices) or to build its image."""


class AgentError(FireError):
    """The agent refused or failed a request; `kind` is "refused", "stale" or "failed"."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass
class Reply(Generic[R]):
    """An agent answer plus the client-side times needed to place the agent's timestamps.

    `result` is the operation's reply type; like every result it also carries the agent's
    `t_recv` and `t_reply` (`protocol.Timed`)."""

    result: R
    sent_ms: float
    received_ms: float

    def offsets(self, times: dict[str, float], since_ms: float) -> dict[str, float]:
        """Agent timestamps → ms since `since_ms` on the client's clock.

        The clocks are never compared: the one-way transit is half of the round trip minus
        the agent's own processing time.
        """
        timed = cast(Mapping[str, Any], self.result)
        t_recv = float(timed["t_recv"])
        t_reply = float(timed["t_reply"])
        transit = max(0.0, ((self.received_ms - self.sent_ms) - (t_reply - t_recv)) / 2.0)
        base = self.sent_ms - since_ms + transit
        return {key: base + (float(t) - t_recv) for key, t in times.items()}


def plugin_version() -> str:
    try:
        return metadata.version("pytest-dcfire")
    except metadata.PackageNotFoundError:
        return "dev"


def image_files() -> list[tuple[str, Path]]:
    """The helper image's build context: (name in the context, file), in a fixed order:
    the Dockerfile and every file of the agent package (bytecode caches aside)."""
    files = [("Dockerfile", DOCKERFILE)]
    for path in sorted(AGENT_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((f"{AGENT_MODULE}/{path.relative_to(AGENT_DIR).as_posix()}", path))
    return files


def helper_image_tag() -> str:
    """The plugin version and a hash of every file of the image's context."""
    sha = hashlib.sha256()
    for name, path in image_files():
        sha.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest = sha.hexdigest()
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", plugin_version())
    return f"pytest-dcfire/helper:{version}-{digest[:12]}"


def ensure_helper_image(engine: Engine, progress: Progress | None = None) -> str:
    """Build the helper image unless this exact version is already on the engine."""
    tag = helper_image_tag()
    try:
        engine.client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    if progress:
        progress(f"building the dcfire helper image {tag} (once per plugin version)")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        folder = tarfile.TarInfo(AGENT_MODULE)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name, path in image_files():
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tail: list[str] = []
    try:
        for chunk in engine.client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            labels={f"{LABEL}.build": "helper"},
        ):
            if "error" in chunk:
                raise HelperUnavailable(
                    f"building the dcfire helper image failed: {chunk['error'].strip()}\n"
                    + "\n".join(tail[-10:])
                )
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                tail.append(line)
    except docker.errors.DockerException as exc:
        raise HelperUnavailable(f"building the dcfire helper image failed: {exc}") from None
    return tag


class Channel:
    """The attached socket of the agent's exec: raw stdin out, multiplexed frames in."""

    def __init__(self, sock: Any) -> None:
        raw = getattr(sock, "_sock", sock)
        if not hasattr(raw, "sendall") or not hasattr(raw, "recv"):
            raise HelperUnavailable(f"unsupported exec socket {type(raw).__name__}")
        self._keep = sock
        self.sock = raw
        if getattr(raw, "family", None) in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self._lines: list[bytes] = []
        self._partial = b""
        self.stderr: list[str] = []

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def read(self, timeout: float, alive: Callable[[], bool] | None = None) -> dict[str, Any]:
        """The next JSON line from the agent.

        The engine does not always close the socket when the agent dies with its container,
        so a wait longer than POLL_S asks `alive()` (one engine call) between slices.
        """
        deadline = time.monotonic() + timeout
        while not self._lines:
            while len(self._buf) < 8 or len(self._buf) < 8 + self._frame_size():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the dcfire agent did not answer")
                self.sock.settimeout(min(left, POLL_S))
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    if alive is not None and not alive():
                        raise ConnectionError("the dcfire agent is gone") from None
                    continue
                if not chunk:
                    raise ConnectionError("the dcfire agent exited")
                self._buf += chunk
            stream, size = struct.unpack(">BxxxI", self._buf[:8])
            data, self._buf = self._buf[8 : 8 + size], self._buf[8 + size :]
            if stream == 2:
                self.stderr.extend(data.decode(errors="replace").splitlines())
                del self.stderr[:-20]
                continue
            self._partial += data
            *lines, self._partial = self._partial.split(b"\n")
            self._lines.extend(line for line in lines if line.strip())
        decoded = json.loads(self._lines.pop(0))
        if not isinstance(decoded, dict):
            raise ConnectionError("the dcfire agent sent garbage")
        return decoded

    def _frame_size(self) -> int:
        return int(struct.unpack(">I", self._buf[4:8])[0]) if len(self._buf) >= 8 else 0

    def close(self) -> None:
        for obj in (self.sock, self._keep):
            with contextlib.suppress(Exception):
                obj.close()


class Helper:
    """The session's helper container and its agent; thread-safe, restarted when it dies."""

    def __init__(
        self,
        engine: Engine,
        progress: Progress | None = None,
        image: str | None = None,
        keep_system: bool = False,
        container: str | None = None,
        reusable: bool = False,
    ) -> None:
        self.engine = engine
        #: When the session's process dies, only undo the faults (the system is kept).
        self.keep_system = keep_system
        #: A reusable system (--dcfire-reuse): its agent outlives this session and serves
        #: the next one, reached through a relay (`agent/serve.py`, `agent/relay.py`).
        self.reusable = reusable and keep_system
        #: The caller just saw `container` running: its first start skips looking again.
        self._seen_running = container is not None and self.reusable
        self.session: SessionIdentity = engine.session
        self.progress = progress
        self.image = image
        #: The helper container: a kept system's (--dcfire-reuse), or made by `start`.
        self.container_id: str | None = container
        self.state_volume = self.session.name("state")
        self.restarts = 0
        self._channel: Channel | None = None
        self._lock = threading.RLock()
        self._next_id = 0
        self._exec_id: str | None = None
        self.adopted: dict[str, Any] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Helper:
        """Build the image if needed, start the helper and its agent (idempotent)."""
        with self._lock:
            if self._channel is None:
                self._start()
        return self

    def _start(self) -> None:
        if self._seen_running:  # a kept system's helper, just listed as running
            self._seen_running = False
        else:
            if self.image is None:
                self.image = ensure_helper_image(self.engine, self.progress)
            self._ensure_volume()
            if not self._container_running():
                self._create_container()
        self._start_agent()

    def _ensure_volume(self) -> None:
        try:
            self.engine.client.volumes.get(self.state_volume)
        except docker.errors.NotFound:
            self.engine.retry(
                lambda: self.engine.client.volumes.create(
                    name=self.state_volume,
                    driver="local",
                    labels=self.session.labels("state"),
                )
            )

    def _container_running(self) -> bool:
        if self.container_id is None:
            return False
        try:
            info = self.engine.client.api.inspect_container(self.container_id)
        except docker.errors.NotFound:
            self.container_id = None
            return False
        if info["State"].get("Running") and not info["State"].get("Paused"):
            return True
        self._remove_container()
        return False

    def _remove_container(self) -> None:
        if self.container_id is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            self.engine.client.api.remove_container(self.container_id, force=True)
        self.container_id = None

    def _create_container(self) -> None:
        api = self.engine.client.api
        host_config = api.create_host_config(
            pid_mode="host",
            cap_add=list(CAPABILITIES),
            security_opt=list(SECURITY_OPT),
            device_cgroup_rules=["b 7:* rmw"],
            devices=["/dev/loop-control:/dev/loop-control:rwm"],
            binds={self.state_volume: {"bind": f"{STATE_ROOT}/{self.session.id}", "mode": "rw"}},
            network_mode="none",
            init=True,
        )
        name = self.session.name("helper") + (f"-{self.restarts}" if self.restarts else "")
        try:
            created = self.engine.retry(
                lambda: api.create_container(
                    self.image,
                    command=["sleep", "infinity"],
                    name=name,
                    labels=self.labels(),
                    host_config=host_config,
                    detach=True,
                )
            )
            self.container_id = str(created["Id"])
            self.engine.retry(lambda: api.start(self.container_id))
        except docker.errors.APIError as exc:
            self._remove_container()
            raise HelperUnavailable(
                "the engine refused the dcfire helper container (capabilities "
                f"{', '.join(CAPABILITIES)}, pid namespace of the host, loop devices): "
                f"{exc.explanation or exc}"
            ) from None

    @property
    def on_owner_death(self) -> str:
        return "undo-faults" if self.keep_system else "remove"

    def labels(self) -> dict[str, str]:
        return {**self.session.labels("helper"), L_ON_OWNER_DEATH: self.on_owner_death}

    def agent_command(self) -> list[str]:
        """The agent's argv: the session, its owner process (pid and start time, so that
        the agent sees it die) and whether the system is kept when it does."""
        if self.reusable:  # the running agent of a kept system, or a new one if none runs
            command = ["python3", "-S", f"{AGENT_HOME}/{AGENT_MODULE}/relay.py", self.session.id]
        else:
            command = ["python3", "-m", AGENT_MODULE, self.session.id]
        if self.session.pid_start:
            command += ["--owner", f"{self.session.pid}:{self.session.pid_start}"]
        return command + ["--keep"] * self.keep_system + ["--serve"] * self.reusable

    def _start_agent(self) -> None:
        api = self.engine.client.api
        assert self.container_id is not None
        try:
            exec_id = api.exec_create(
                self.container_id,
                self.agent_command(),
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                workdir=AGENT_HOME,
            )["Id"]
            channel = Channel(api.exec_start(exec_id, socket=True))
            self._exec_id = str(exec_id)
        except docker.errors.APIError as exc:
            raise HelperUnavailable(f"cannot start the dcfire agent: {exc}") from None
        try:
            hello = cast(Hello, channel.read(30.0))
        except (OSError, ValueError) as exc:
            channel.close()
            detail = "; ".join(channel.stderr[-5:])
            raise HelperUnavailable(f"the dcfire agent did not start: {exc} {detail}") from None
        if not hello.get("ready"):
            channel.close()
            raise HelperUnavailable(f"the dcfire agent did not start: {hello}")
        self.adopted = dict(hello.get("adopted") or {})
        self._channel = channel

    def close(self) -> None:
        """Undo everything the agent applied, then remove the helper and its state volume.

        Call it last, after the service containers are removed and the pools destroyed
        (`StoragePools.close()`); pools left over are thawed, their loop devices detached
        and their volumes removed here.
        """
        with self._lock:
            if self._channel is not None:
                with contextlib.suppress(FireError, OSError):
                    self._call(SHUTDOWN.name, {}, 10.0)
                self._channel.close()
                self._channel = None
            self._remove_container()
            # Pools not destroyed by their owner (an aborted start): their volumes name loop
            # devices that are now free for other sessions, so they must not outlive us.
            flt = {"label": [f"{L_SESSION}={self.session.id}", f"{L_ROLE}=pool"]}
            for volume in self.engine.client.volumes.list(filters=flt):
                with contextlib.suppress(docker.errors.APIError):
                    volume.remove(force=True)
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.engine.client.volumes.get(self.state_volume).remove(force=True)

    @property
    def running(self) -> bool:
        return self._channel is not None

    # -- requests -----------------------------------------------------------------------

    def call(self, op: Op[Q, R], request: Q, timeout: float = REQUEST_TIMEOUT) -> Reply[R]:
        """Send one typed request (`protocol`); restart the helper once if it died.
        Raises AgentError."""
        reply = self._request(op.name, dict(cast(Mapping[str, Any], request)), timeout)
        return cast(Reply[R], reply)

    def request(
        self, op: str, timeout: float = REQUEST_TIMEOUT, **args: Any
    ) -> Reply[dict[str, Any]]:
        """Send one untyped request (what tests use to send the agent garbage)."""
        return self._request(op, args, timeout)

    def _request(self, op: str, args: dict[str, Any], timeout: float) -> Reply[dict[str, Any]]:
        with self._lock:
            if self._channel is None:
                self._start()
            try:
                return self._call(op, args, timeout)
            except (OSError, ConnectionError, ValueError) as first:
                if self._channel is not None:
                    self._channel.close()
                    self._channel = None
                self.restarts += 1
                if self.progress:
                    self.progress(f"the dcfire helper died ({first}); starting it again")
                self._start()
                return self._call(op, args, timeout)

    def _call(self, op: str, args: dict[str, Any], timeout: float) -> Reply[dict[str, Any]]:
        assert self._channel is not None
        self._next_id += 1
        rid = self._next_id
        message = {"id": rid, "op": op, **args}
        sent = monotonic_ms()
        self._channel.send(message)
        while True:
            answer = self._channel.read(timeout, self._agent_alive)
            if answer.get("id") == rid:
                break
        received = monotonic_ms()
        if not answer.get("ok"):
            kind = str(answer.get("kind", "failed"))
            raise AgentError(kind, f"dcfire helper: {answer.get('error', 'no detail')}")
        return Reply(dict(answer["result"]), sent, received)

    def _agent_alive(self) -> bool:
        if self._exec_id is None:
            return False
        try:
            return bool(self.engine.client.api.exec_inspect(self._exec_id).get("Running"))
        except docker.errors.APIError:
            return False

    def status(self) -> StatusReply:
        return self.call(STATUS, Empty()).result

    def kill_agent_for_test(self) -> None:
        """Drop the channel without telling the agent (what a SIGKILLed pytest does)."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


# -- reaping dead sessions -------------------------------------------------------------------


def thaw_dead_session(helper: Helper, session: str, containers: Iterable[Any] = ()) -> list[str]:
    """Thaw and detach every pool of a dead `session`, and undo its fallback (iptables) cuts
    and peer cuts (nftables ones went with the dead agent: their tables were owned by it).

    For the runtime's reaper (`reap_dead_sessions(client, thaw=...)`): it runs before the
    dead session's containers and volumes are removed, so that no removal ever waits on a
    frozen filesystem. Returns what it did, for the report.
    """
    if not re.match(r"^[a-z0-9]{1,32}$", session) or session == helper.session.id:
        raise FireError(f"refusing to reap session {session!r}")
    client = helper.engine.client
    flt = {"label": [f"{L_SESSION}={session}", f"{L_ROLE}=helper"]}
    helper_pid: int | None = None
    for dead in client.containers.list(all=True, filters=flt, ignore_removed=True):
        pid = int((dead.attrs.get("State") or {}).get("Pid") or 0)
        if pid > 1:
            helper_pid = pid
    mountpoint: str | None = None
    state_flt = {"label": [f"{L_SESSION}={session}", f"{L_ROLE}=state"]}
    for volume in client.volumes.list(filters=state_flt):
        mountpoint = str(volume.attrs.get("Mountpoint") or "") or None
    result = helper.call(
        REAP, ReapRequest(session=session, helper_pid=helper_pid, state_mountpoint=mountpoint)
    ).result
    done = [f"thawed pool {p}" for p in result.get("thawed", [])]
    done += [f"detached {d}" for d in result.get("detached", [])]
    done += [f"problem: {e}" for e in result.get("errors", [])]
    journal = result["journal"] or {"cuts": {}, "peers": {}}
    peers = {str(name): cids for name, cids in (journal.get("peers") or {}).items() if cids}
    cuts = dict.fromkeys([*(journal.get("cuts") or {}), *(c for v in peers.values() for c in v)])
    targets: list[WireTarget] = []
    for cid in cuts:
        try:
            info = client.api.inspect_container(cid)
        except docker.errors.NotFound:
            continue
        pid = int(info["State"].get("Pid") or 0)
        if pid > 1:
            targets.append({"id": info["Id"], "pid": pid})
    if targets:
        with contextlib.suppress(AgentError):
            request = UncutForeignRequest(session=session, targets=targets, peers=sorted(peers))
            undone = helper.call(UNCUT_FOREIGN, request).result
            done += [f"removed cut on {c[:12]}" for c in undone.get("restored", [])]
    return done


def thawer(helper: Helper) -> Callable[[str, list[Any]], None]:
    """`thaw_dead_session` in the shape the runtime's reaper takes (`thaw=`)."""

    def thaw(session: str, containers: list[Any]) -> None:
        thaw_dead_session(helper, session, containers)

    return thaw


def reap(engine: Engine, helper: Helper) -> Any:
    """Remove what dead sessions left, thawing and detaching their pools first."""
    return reap_dead_sessions(engine.client, thaw=thawer(helper))


__all__ = [
    "CAPABILITIES",
    "AgentError",
    "FaultTiming",
    "Helper",
    "HelperUnavailable",
    "Reply",
    "ensure_helper_image",
    "helper_image_tag",
    "reap",
    "thaw_dead_session",
    "thawer",
]
