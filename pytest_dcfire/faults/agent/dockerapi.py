"""The Docker Engine API from inside the helper, with the standard library only.

The helper shares the host's pid namespace, so the engine's socket is reachable through
`/proc/<dockerd pid>/root<socket path>` without mounting anything into the helper. Which of
the host's dockerd processes runs us is checked, not assumed: the engine must list a
helper container of our session.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

from .procs import pids_named

LABEL = "io.github.pytest-dcfire"
L_SESSION = f"{LABEL}.session"
L_ROLE = f"{LABEL}.role"
L_ADOPTED = f"{LABEL}.adopted"
#: Where dockerd listens unless its command line says otherwise.
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
TIMEOUT_S = 30.0


class EngineError(Exception):
    """The engine answered with an error status (or could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"{status}: {message}")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class DockerAPI:
    """One engine reached through a unix socket: `path` here, `host_path` on the engine's
    host (what a bind mount of the socket names)."""

    def __init__(self, path: str, host_path: str | None = None) -> None:
        self.path = path
        self.host_path = host_path or path

    def call(self, method: str, url: str, body: Any = None, **query: Any) -> Any:
        """One request; the decoded JSON answer (None when empty). Raises EngineError."""
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in query.items()}
            )
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn = _UnixConnection(self.path, TIMEOUT_S)
        try:
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise EngineError(0, f"{method} {url}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = str(json.loads(raw).get("message", raw[:200]))
            except ValueError:
                message = raw[:200].decode(errors="replace")
            raise EngineError(response.status, message)
        return json.loads(raw) if raw.strip() else None

    def list(self, kind: str, session: str) -> list[dict[str, Any]]:
        """Containers (all of them), volumes or networks carrying `session`'s label."""
        filters = {"label": [f"{L_SESSION}={session}"]}
        if kind == "containers":
            return list(self.call("GET", "/containers/json", all=1, filters=filters) or [])
        if kind == "volumes":
            return list((self.call("GET", "/volumes", filters=filters) or {}).get("Volumes") or [])
        if kind == "networks":
            return list(self.call("GET", "/networks", filters=filters) or [])
        raise ValueError(kind)


def dockerd_sockets(cmdline: list[str]) -> list[str]:
    """The unix sockets a dockerd command line listens on (`-H unix://...`), then the
    defaults."""
    found: list[str] = []
    args = iter(cmdline[1:])
    for arg in args:
        value = None
        if arg in ("-H", "--host"):
            value = next(args, "")
        elif arg.startswith(("-H=", "--host=")):
            value = arg.split("=", 1)[1]
        if value and value.startswith("unix://"):
            found.append(value[len("unix://") :])
    return [*found, *(p for p in DEFAULT_SOCKETS if p not in found)]


def _dockerds(proc: str) -> list[tuple[int, list[str]]]:
    found = []
    for pid in pids_named("dockerd", proc):
        try:
            with open(f"{proc}/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        found.append((pid, argv))
    return found


def find_engine(session: str, proc: str = "/proc") -> DockerAPI:
    """The engine that runs `session`'s helper (this container), or EngineError saying
    what was tried."""
    tried: list[str] = []
    for pid, argv in _dockerds(proc):
        for host_path in dockerd_sockets(argv):
            api = DockerAPI(f"{proc}/{pid}/root{host_path}", host_path)
            filters = {"label": [f"{L_SESSION}={session}", f"{L_ROLE}=helper"]}
            try:
                if api.call("GET", "/containers/json", filters=filters):
                    return api
                tried.append(f"{api.path}: no helper of session {session}")
            except EngineError as exc:
                tried.append(f"{api.path}: {exc}")
    raise EngineError(0, "no engine runs this helper (" + ("; ".join(tried) or "no dockerd") + ")")
