"""`python3 -S relay.py SESSION [--owner PID:START] --keep --serve`: a new owner's channel to
the agent that a reusable system's helper keeps running between sessions (`serve`).

A reusable system outlives the session that started it, and so does its agent: once the
owner's channel closes it undoes every fault and waits for the next owner on a unix socket
in the session's state directory. This script is what the next session execs instead of a
new agent: it connects there, says who the owner is, and copies the exec's stdin to the
socket and the socket to stdout, so the client speaks to the running agent exactly as to one
it started (a `Hello` first, then one answer per request). When the owner dies (even by
SIGKILL) the engine closes stdin, this script exits, the agent sees its socket close and
undoes the faults. When nothing listens (the first session, or an agent that died), it
becomes the agent itself (`exec`), with the same arguments.

Run as a script with `-S` (no `site`, no package import): the exec costs a few milliseconds,
where starting the agent (its imports, adopting the journal) costs a few hundred.
Standard library only; it imports nothing from the package (`serve.SOCKET` is the same name).
"""

from __future__ import annotations

import os
import re
import select
import socket
import sys

SOCKET = "agent.sock"
ROOT = "/dcfire"
SESSION_RE = re.compile(r"^[a-z0-9]{1,32}$")
OWNER_RE = re.compile(r"^\d+:\d+$")


def owner_line(argv: list[str]) -> bytes:
    """The first line the agent reads: the new owner (empty when it is not known)."""
    owner = argv[argv.index("--owner") + 1] if "--owner" in argv[:-1] else ""
    if owner and not OWNER_RE.match(owner):
        raise SystemExit(f"bad --owner {owner!r}")
    return ('{"owner": "' + owner + '"}\n').encode()


def connect(session: str, root: str = ROOT) -> socket.socket | None:
    """The running agent's socket, or None when no agent of `session` listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"{root}/{session}/{SOCKET}")
    except OSError:
        sock.close()
        return None
    return sock


def pump(sock: socket.socket, stdin: int = 0, stdout: int = 1) -> None:
    """Copy stdin to the socket and the socket to stdout until either side closes."""
    channel = sock.fileno()
    while True:
        readable, _, _ = select.select([stdin, channel], [], [])
        if stdin in readable:
            data = os.read(stdin, 65536)
            if not data:
                return  # the owner is gone: our closing socket tells the agent
            sock.sendall(data)
        if channel in readable:
            data = sock.recv(65536)
            if not data:
                return  # the agent ended (a shutdown): the exec ends, the client sees EOF
            view = memoryview(data)
            while view:
                view = view[os.write(stdout, view) :]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not SESSION_RE.match(argv[1]):
        raise SystemExit("usage: python3 -S relay.py SESSION [--owner PID:START] --keep --serve")
    first = owner_line(argv)
    sock = connect(argv[1])
    if sock is None:
        os.execv(sys.executable, [sys.executable, "-m", "dcfire_agent", *argv[1:]])
    with sock:
        sock.sendall(first)
        pump(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
