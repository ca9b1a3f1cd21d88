"""A reusable system's agent outlives its owner (`--serve`, with `--keep`): once the owner's
channel closes and every fault is undone, it waits on a unix socket in the session's state
directory for the next session that takes the system over (`relay.py` connects there), and
serves it as it served the first: a `Hello`, then one answer per request line. Each owner's
socket closing (the owner's process died, even by SIGKILL: its relay's stdin closed) undoes
every fault again, so nothing of one run ever burns into the next; a `shutdown` (the system
is being removed) ends the agent. One owner at a time: the next waits until the socket of the
previous one closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from .relay import SOCKET
from .watchdog import Owner, say

#: Serves one channel (a line reader) to its end: True when it closed, False on a shutdown.
Lines = Callable[[Callable[[], bytes]], bool]


def listen(state: str) -> socket.socket:
    """The socket the next owner's relay connects to (a stale one from a dead agent goes).

    Bound and listening under a temporary name, then renamed into place: the path exists
    only once connections are taken, so a relay never finds it refusing (it would take that
    for "no agent" and start a second one)."""
    path = f"{state}/{SOCKET}"
    ready = f"{path}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ready)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(ready)
    os.chmod(ready, 0o600)
    listener.listen(4)
    os.replace(ready, path)  # atomic, over a stale socket too
    return listener


def quiet_stdio() -> None:
    """The first owner's exec is detached: nothing may block writing to its pipes."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def owner_of(line: bytes) -> Owner | None:
    """The owner the relay names on its first line (None: not known, or garbage)."""
    try:
        text = str(json.loads(line).get("owner") or "")
    except (ValueError, AttributeError):
        return None
    return Owner.parse(text)


def serve(
    agent: Any,
    hello: Callable[[Owner | None], dict[str, Any]],
    lines: Lines,
    quiet: Callable[[], None] = quiet_stdio,
) -> None:
    """Serve one owner after another until a shutdown; returns then (faults undone)."""
    listener = listen(agent.state)
    quiet()
    while True:
        conn, _ = listener.accept()
        owner: Owner | None = None
        with conn, conn.makefile("rb") as reader, conn.makefile("w", encoding="utf-8") as out:
            try:
                owner = owner_of(reader.readline())
                agent.next_owner(out)
                agent.send(hello(owner))
                closed = lines(reader.readline)
            except OSError:
                closed = True
            finally:
                agent.undo_all()
        if not closed:
            with contextlib.suppress(OSError):
                os.unlink(f"{agent.state}/{SOCKET}")
            return
        say(f"owner {owner or '?'} gone: faults undone, waiting for the next one")
