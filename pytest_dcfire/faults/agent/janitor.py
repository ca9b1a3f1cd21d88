"""`python3 -m dcfire_agent.janitor SESSION`: remove every container, volume and network
of a dead session, then exit (the engine then removes the janitor itself).

It runs in a container of its own (the helper image, no network, the engine's socket
bound in, AutoRemove) that the agent starts once it has undone every fault and detached
every pool: the helper cannot remove itself, nor the state volume it mounts. Only objects
carrying the session's label are touched, never an adopted one.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .dockerapi import L_ADOPTED, L_ROLE, L_SESSION, DockerAPI, EngineError

#: Where the janitor's container has the engine's socket.
SOCKET = "/run/dcfire-docker.sock"
JANITOR_ROLE = "janitor"
SESSION_RE = re.compile(r"^[a-z0-9]{1,32}$")
#: A volume may stay "in use" for a moment after its last container went.
VOLUME_TRIES = 20


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("Labels") or {})


def ours(obj: dict[str, Any], session: str, spare_roles: Iterable[str] = ()) -> bool:
    """Carries exactly `session`'s label, was not adopted, is no janitor, not spared."""
    labels = _labels(obj)
    return (
        labels.get(L_SESSION) == session
        and L_ADOPTED not in labels
        and labels.get(L_ROLE) not in (JANITOR_ROLE, *spare_roles)
    )


def _each(fn: Callable[[dict[str, Any]], None], objs: list[dict[str, Any]]) -> None:
    threads = [threading.Thread(target=fn, args=(o,)) for o in objs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def sweep(
    api: DockerAPI,
    session: str,
    spare_roles: Iterable[str] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], list[str]]:
    """Remove the session's containers (services side by side, helpers last), then its
    volumes, then its networks; returns (removed, problems)."""
    if not SESSION_RE.match(session):
        raise ValueError(f"bad session id {session!r}")
    spare = tuple(spare_roles)
    removed: list[str] = []
    problems: list[str] = []

    def remove(what: str, url: str, tries: int = 1, **query: Any) -> None:
        for attempt in range(tries):
            try:
                api.call("DELETE", url, **query)
                removed.append(what)
                return
            except EngineError as exc:
                if exc.status == 404:
                    return
                if exc.status == 409 and attempt + 1 < tries:
                    sleep(0.25)
                    continue
                problems.append(f"{what}: {exc}")
                return

    containers = [c for c in api.list("containers", session) if ours(c, session, spare)]
    helpers = [c for c in containers if _labels(c).get(L_ROLE) == "helper"]
    others = [c for c in containers if c not in helpers]

    def container(c: dict[str, Any]) -> None:
        remove(f"container {c['Id'][:12]}", f"/containers/{c['Id']}", force=1, v=1)

    def volume(v: dict[str, Any]) -> None:
        remove(f"volume {v['Name']}", f"/volumes/{v['Name']}", VOLUME_TRIES, force=1)

    for group in (others, helpers):  # a helper holds pool mounts: it goes last
        _each(container, group)
    _each(volume, [v for v in api.list("volumes", session) if ours(v, session, spare)])
    for network in api.list("networks", session):
        if ours(network, session, spare):
            remove(f"network {network['Name']}", f"/networks/{network['Id']}")
    return removed, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not SESSION_RE.match(argv[1]):
        print("usage: python3 -m dcfire_agent.janitor SESSION", file=sys.stderr)
        return 2
    removed, problems = sweep(DockerAPI(SOCKET), argv[1])
    print(f"dcfire janitor: session {argv[1]}: removed {len(removed)}: {', '.join(removed)}")
    for problem in problems:
        print(f"dcfire janitor: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
