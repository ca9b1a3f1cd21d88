"""`python3 -m dcfire_agent SESSION`: the agent's main loop on the exec's stdin and stdout.

The first line written is a `Hello`; then one answer per request line. When stdin closes
(the client died, even by SIGKILL: the engine closes the exec's stdin when the attach
connection drops) or on SIGTERM/SIGHUP, the agent undoes every cut and thaws every frozen
pool before it exits (the dead-man switch). SIGUSR1 is a handover: a new agent of the same
session takes the journal over, so this one exits without undoing anything.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from .agent import Agent
from .kernel import now_ms
from .protocol import AGENT_MODULE, PROTOCOL, SHUTDOWN, Hello


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python3 -m {AGENT_MODULE} SESSION", file=sys.stderr)
        return 2
    out = os.fdopen(os.dup(1), "w", buffering=1)
    agent = Agent(argv[1], out)

    def on_signal(signum: int, frame: object) -> None:
        agent.undo_all()
        os._exit(0)

    def on_handover(signum: int, frame: object) -> None:
        os._exit(0)  # a new agent of this session adopts the journal and keeps the fire

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR1, on_handover)
    hello: Hello = {
        "ready": True,
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "session": agent.session,
        "adopted": agent.adopted,
        "t": now_ms(),
    }
    agent.send(dict(hello))
    stdin = sys.stdin.buffer
    try:
        while True:
            line = stdin.readline()
            if not line:
                break  # the client is gone: dead-man switch
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                error = f"bad json: {exc}"
                agent.send({"id": None, "ok": False, "kind": "refused", "error": error})
                continue
            agent.handle(request)
            if request.get("op") == SHUTDOWN.name:
                break
    finally:
        agent.undo_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
