"""`python3 -m dcfire_agent SESSION [--owner PID:START] [--keep [--serve]]`: the agent's main
loop on the exec's stdin and stdout.

The first line written is a `Hello`; then one answer per request line. When stdin closes
(the client died, even by SIGKILL: the engine closes the exec's stdin when the attach
connection drops) or on SIGTERM/SIGHUP, the agent undoes every cut and thaws every frozen
pool before it exits (the dead-man switch). After a closed stdin it then removes the whole
session once its owner (`--owner`, the session's process) is provably gone, unless
`--keep` (`watchdog`). SIGUSR1 is a handover: a new agent of the same session takes the
journal over, so this one exits without undoing anything. With `--serve` (a reusable
system) it then stays for the next owner instead of exiting (`serve`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from .agent import Agent
from .kernel import now_ms
from .protocol import AGENT_MODULE, PROTOCOL, SHUTDOWN, Hello
from .serve import serve
from .watchdog import Owner, after_channel_closed

USAGE = f"usage: python3 -m {AGENT_MODULE} SESSION [--owner PID:START] [--keep [--serve]]"


def parse_args(argv: list[str]) -> tuple[str, Owner | None, bool]:
    """SESSION, the owner (None when not given) and whether the session keeps its system
    (`--serve` is read by `main`: it only ever comes with `--keep`)."""
    args = argv[1:]
    keep = "--keep" in args
    args = [a for a in args if a not in ("--keep", "--serve")]
    owner = None
    if len(args) == 3 and args[1] == "--owner":
        owner = Owner.parse(args[2])
        if owner is None:
            raise SystemExit(f"{USAGE}\nbad --owner {args[2]!r}")
        args = args[:1]
    if len(args) != 1:
        raise SystemExit(USAGE)
    return args[0], owner, keep


def lines(agent: Agent, readline: Callable[[], bytes]) -> bool:
    """Answer request lines until the channel closes (True) or a `shutdown` (False)."""
    while True:
        line = readline()
        if not line:
            return True  # the client is gone: dead-man switch
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            agent.send({"id": None, "ok": False, "kind": "refused", "error": f"bad json: {exc}"})
            continue
        agent.handle(request)
        if request.get("op") == SHUTDOWN.name:
            return False


def main(argv: list[str]) -> int:
    session, owner, keep = parse_args(argv)
    serving = keep and "--serve" in argv
    out = os.fdopen(os.dup(1), "w", buffering=1)
    agent = Agent(session, out)
    owner_visible = owner is not None and owner.alive()

    def on_signal(signum: int, frame: object) -> None:
        agent.undo_all()
        os._exit(0)

    def on_handover(signum: int, frame: object) -> None:
        os._exit(0)  # a new agent of this session adopts the journal and keeps the fire

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR1, on_handover)

    def hello(owner: Owner | None, visible: bool) -> dict[str, Any]:
        said: Hello = {
            "ready": True,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "session": agent.session,
            "adopted": agent.adopted,
            "t": now_ms(),
            "on_owner_death": "undo-faults" if keep else "remove",
            "owner_visible": visible,
        }
        return dict(said)

    agent.send(hello(owner, owner_visible))
    try:
        closed = lines(agent, sys.stdin.buffer.readline)
    finally:
        agent.undo_all()
    if closed and serving:
        # What the first owner's agent adopted is undone now: the next owners hear nothing.
        agent.adopted = {"pools": sorted(agent.pools.pools), "lost": [], "cuts": [], "peers": []}
        serve(agent, lambda new: hello(new, new is not None and new.alive()), partial(lines, agent))
    elif closed:
        after_channel_closed(agent, owner, owner_visible, keep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
