"""When the session's process dies, nothing of its session outlives it (testcontainers'
Ryuk, inside the helper we already have).

The agent's channel closing without a `shutdown` means the session's process is gone, or
only its connection dropped (the client then starts a new agent, which asks this one to
hand over). So the agent undoes every fault at once (the dead-man switch), then waits for
proof: the owner's pid (with its start time) gone from the host's pid namespace, or, when
the owner was never visible from here (a remote engine), a grace period without a
handover. Then, unless the session keeps its system (`--dcfire-keep`: undo faults only),
it unmounts and detaches every pool of the session and starts the janitor, which removes
the session's containers, volumes and networks, the helper last.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .dockerapi import L_ROLE, L_SESSION, DockerAPI, EngineError, find_engine
from .janitor import JANITOR_ROLE, SOCKET, sweep
from .procs import running

#: Seconds without a handover after which an owner we cannot see is taken for dead.
GRACE_S = 10.0
POLL_S = 0.1
OWNER_RE = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class Owner:
    """The session's process: its pid and start time (`PID:START`, as labelled)."""

    pid: int
    start: str

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        found = OWNER_RE.match(text)
        return cls(int(found.group(1)), found.group(2)) if found else None

    def alive(self, proc: str = "/proc") -> bool:
        return running(self.pid, self.start, proc)

    def __str__(self) -> str:
        return f"pid {self.pid}"


def wait_owner_gone(
    owner: Owner | None,
    visible: bool,
    grace: float = GRACE_S,
    sleep: Callable[[float], None] = time.sleep,
    proc: str = "/proc",
) -> str:
    """Return once the owner is provably gone (`visible`: we saw it alive from here), or
    after `grace` seconds when we never could see it. A handover (SIGUSR1) ends the agent
    meanwhile. Returns why it judged the owner dead."""
    if owner is not None and visible:
        while owner.alive(proc):
            sleep(POLL_S)
        return f"{owner} is gone"
    sleep(grace)
    return f"no new agent within {grace:.0f} s"


def say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"dcfire agent: {line}", file=sys.stderr, flush=True)


def start_janitor(api: DockerAPI, session: str, workdir: str) -> str:
    """Run the janitor in a container of its own, from this helper's image, labelled as
    this session's; it removes itself (AutoRemove) when done. Returns its id."""
    filters = {"label": [f"{L_SESSION}={session}", f"{L_ROLE}=helper"]}
    helpers = api.call("GET", "/containers/json", filters=filters) or []
    if not helpers:
        raise EngineError(404, f"no helper of session {session}")
    me = socket.gethostname()
    helper = next((h for h in helpers if str(h["Id"]).startswith(me)), helpers[0])
    info = api.call("GET", f"/containers/{helper['Id']}/json")
    labels = dict(info["Config"].get("Labels") or {})
    labels[L_ROLE] = JANITOR_ROLE
    body: dict[str, Any] = {
        "Image": info["Image"],
        "Cmd": ["python3", "-m", "dcfire_agent.janitor", session],
        "WorkingDir": workdir,
        "Labels": labels,
        "NetworkDisabled": True,
        "HostConfig": {
            "AutoRemove": True,
            "NetworkMode": "none",
            "Binds": [f"{api.host_path}:{SOCKET}"],
        },
    }
    try:
        created = api.call("POST", "/containers/create", body, name=f"{session}-janitor")
    except EngineError as exc:
        if exc.status != 409:  # a janitor of this name exists: start another, unnamed
            raise
        created = api.call("POST", "/containers/create", body)
    api.call("POST", f"/containers/{created['Id']}/start")
    return str(created["Id"])


def remove_session(agent: Any, release_pools: Callable[[], list[str]]) -> None:
    """Detach every pool of the session, then hand the engine's side to the janitor (or,
    if the engine refuses it, remove all but the helper and its state from here)."""
    for problem in release_pools():
        say(f"pool: {problem}")
    try:
        api = find_engine(agent.session)
    except EngineError as exc:
        say(f"cannot reach the engine, the next session removes the rest: {exc}")
        return
    try:
        janitor = start_janitor(api, agent.session, os.getcwd())
        say(f"janitor {janitor[:12]} removes session {agent.session}")
    except (EngineError, KeyError) as exc:
        say(f"no janitor ({exc}); removing all but the helper from here")
        _, problems = sweep(api, agent.session, spare_roles=("helper", "state"))
        for problem in problems:
            say(problem)


def after_channel_closed(agent: Any, owner: Owner | None, visible: bool, keep: bool) -> None:
    """The dead-man switch's second half (its first, undoing every fault, is done)."""
    if keep:
        say("faults undone; the system is kept (undo faults only)")
        return
    why = wait_owner_gone(owner, visible)
    say(f"{why}: removing session {agent.session}")
    remove_session(agent, agent.pools.release_all)
