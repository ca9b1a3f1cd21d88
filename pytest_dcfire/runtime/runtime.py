"""One session's running system and everything that serves it, as one object.

A `Runtime` is built by one of two factories: `start` (a fresh system: proxies, engine,
helper and pools, containers) or `attach` (an xdist worker's handles on the copy its
controller runs under `dcfire_share = session`); `start_adopted` is `start` without
services, for the controller that only burns adopted containers. Each factory pushes the
undo of every step onto an exit stack as it takes the step, so a construction that fails
half-way unwinds exactly what it built, and `close` tears a finished one down in the reverse
order of its construction: proxies, faults undone, containers, pools and helper, engine.
A caller may pass the `Teardown` in, to undo a construction that another thread interrupts
(pytest-timeout's thread method) before the runtime is returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pytest_dcfire.config import INI_TOXIPROXY, Settings
from pytest_dcfire.errors import DcfireError
from pytest_dcfire.faults.backend import FaultBackend
from pytest_dcfire.faults.storage import Pool
from pytest_dcfire.links import Links
from pytest_dcfire.runtime.adopt import Adoptions
from pytest_dcfire.runtime.clocks import Clocks
from pytest_dcfire.runtime.engine import L_SHARED, Engine, SessionIdentity
from pytest_dcfire.runtime.handles import ServiceHandle
from pytest_dcfire.runtime.reaper import reap_dead_sessions
from pytest_dcfire.runtime.system import System
from pytest_dcfire.topology.model import Topology

Progress = Callable[[str], None]
Joined = Callable[[ServiceHandle], None]
#: What `close` does with the system: remove it, or keep it (`--dcfire-keep`).
Retention = Literal["remove", "keep"]


class Teardown:
    """An exit stack of undo steps; a step's problems are collected, never raised, so one
    failed step never stops the steps below it."""

    @classmethod
    def for_settings(cls, settings: Settings) -> Teardown:
        return cls("keep" if settings.keep else "remove")

    def __init__(self, retention: Retention) -> None:
        self.retention: Retention = retention
        self.problems: list[str] = []
        self._stack = contextlib.ExitStack()

    @property
    def removing(self) -> bool:
        return self.retention == "remove"

    def push(self, what: str, undo: Callable[[], Sequence[str] | None]) -> None:
        def run() -> None:
            try:
                self.problems += list(undo() or ())
            except Exception as exc:
                self.problems.append(f"{what}: {exc}")

        self._stack.callback(run)

    def close(self) -> list[str]:
        self._stack.close()
        problems, self.problems = self.problems, []
        return problems


@dataclass
class Runtime:
    """The engine connection, the fault backend, the system, its links and its adoptions;
    `close()` undoes their construction in reverse and returns the problems met."""

    engine: Engine
    faults: FaultBackend
    system: System
    links: Links | None
    adoptions: Adoptions
    teardown: Teardown
    #: What the reaper removed before this system started (a progress line), if anything.
    reaped: str | None = None

    def close(self) -> list[str]:
        """Remove everything (or keep it, per the retention); never raises."""
        return self.teardown.close()


# -- the steps every factory takes ------------------------------------------------------------


def _connect(identity: SessionIdentity, teardown: Teardown) -> Engine:
    engine = Engine.connect(identity)
    teardown.push("engine", lambda: engine.close())
    return engine


def _backend(
    engine: Engine,
    topology: Topology,
    progress: Progress,
    teardown: Teardown,
    owner: SessionIdentity | None = None,
) -> FaultBackend:
    faults = FaultBackend(engine, topology, progress, owner=owner)
    # The helper goes last: the containers and pools it serves are gone by then.
    teardown.push("faults", lambda: faults.close() if teardown.removing else faults.release())
    return faults


def _hold(system: System, faults: FaultBackend, progress: Progress, teardown: Teardown) -> None:
    """Register the system, and the undo of every fault before its containers go: a
    container blocked on a frozen pool makes the engine's kill wait (12 s on Engine 20.10)
    and then fail."""
    faults.attach(system)

    def stop() -> list[str]:
        if teardown.retention == "remove":
            return system.stop()
        progress(system.keep_instructions())
        return []

    teardown.push("system", stop)
    teardown.push("faults", lambda: faults.release() if teardown.removing else [])


def _adoptions(
    engine: Engine,
    system: System,
    faults: FaultBackend,
    settings: Settings,
    progress: Progress,
    on_join: Sequence[Joined],
) -> Adoptions:
    """Let tests adopt containers into the system (`dcfire_topology.adopt`)."""
    adoptions = Adoptions(
        engine, system, faults.targets, progress, health_timeout=settings.recovery_timeout
    )
    adoptions.on_join.extend(on_join)
    system.adopter = adoptions
    return adoptions


def _reap_workers(
    engine: Engine, faults: FaultBackend, identity: SessionIdentity, progress: Progress
) -> list[str]:
    """Remove the helpers of workers that died attached to our shared copy (SIGKILL):
    their agents undid their faults already; their mounts of our pools go with them."""
    try:
        report = reap_dead_sessions(
            engine.client, thaw=faults.thaw_dead, label=f"{L_SHARED}={identity.id}"
        )
    except Exception as exc:
        return [f"reaping dead workers: {exc}"]
    if report.sessions:
        progress(f"xdist workers that died: {report}")
    return report.problems


# -- the factories ----------------------------------------------------------------------------


def start(
    settings: Settings,
    topology: Topology,
    identity: SessionIdentity,
    progress: Progress,
    *,
    verbose: bool = False,
    serving: bool = False,
    on_join: Sequence[Joined] = (),
    teardown: Teardown | None = None,
) -> Runtime:
    """Start the system under test; `serving`: the xdist controller's shared copy, whose
    dead workers are reaped first at teardown."""
    teardown = teardown or Teardown.for_settings(settings)
    with contextlib.ExitStack() as unwind:
        unwind.callback(lambda: _report(teardown.close(), progress))
        # Reached (or started) first: a wrong dcfire_toxiproxy fails before any container.
        links = Links(settings, identity.id, progress).start()
        teardown.push("links", links.close)  # the server, if construction stops early
        engine = _connect(identity, teardown)
        faults = _backend(engine, topology, progress, teardown)
        report = reap_dead_sessions(engine.client, thaw=faults.thaw_dead)
        reaped = str(report) if report.sessions else None
        if reaped:
            progress(reaped)
        controllable = [s.name for s in topology.services if s.clock == "controllable"]
        system = System(
            engine,
            topology,
            faults.volumes,
            progress,
            keep=settings.keep,
            wiring=links,
            verbose=verbose,
            clocks=Clocks(engine, controllable, progress) if controllable else None,
        )
        _hold(system, faults, progress, teardown)
        # The proxies (and an image-mode server on the topology network) before the network.
        teardown.push("links", links.close)
        system.start()
        faults.warm()
        try:
            links.attach(system)
        except Exception as exc:
            raise DcfireError(f"creating the link proxies ({INI_TOXIPROXY}) failed: {exc}") from exc
        adoptions = _adoptions(engine, system, faults, settings, progress, on_join)
        if serving:
            teardown.push("workers", lambda: _reap_workers(engine, faults, identity, progress))
        unwind.pop_all()
    return Runtime(engine, faults, system, links, adoptions, teardown, reaped)


def start_adopted(
    settings: Settings,
    topology: Topology,
    identity: SessionIdentity,
    progress: Progress,
    *,
    on_join: Sequence[Joined] = (),
    teardown: Teardown | None = None,
) -> Runtime:
    """The xdist controller's system when every worker owns its own copy: only the adopted
    compose containers (the one thing all workers share), so that the controller burns them
    once for the whole run; nothing is started or created but the helper."""
    sites_only = replace(topology, services=(), links=())
    teardown = teardown or Teardown.for_settings(settings)
    with contextlib.ExitStack() as unwind:
        unwind.callback(lambda: _report(teardown.close(), progress))
        engine = _connect(identity, teardown)
        faults = _backend(engine, sites_only, progress, teardown)
        system = System(engine, sites_only, faults.volumes, progress)
        _hold(system, faults, progress, teardown)
        adoptions = _adoptions(engine, system, faults, settings, progress, on_join)
        unwind.pop_all()
    return Runtime(engine, faults, system, None, adoptions, teardown)


def attach(
    settings: Settings,
    topology: Topology,
    identity: SessionIdentity,
    progress: Progress,
    described: dict[str, Any],
    *,
    on_join: Sequence[Joined] = (),
    teardown: Teardown | None = None,
) -> Runtime:
    """An xdist worker's side of `dcfire_share = session`: handles for the controller's
    containers, its own helper, the shared pools and proxies; nothing else created."""
    owner = SessionIdentity.from_dict(described["identity"])
    members = {name: (str(cid), str(ip)) for name, (cid, ip) in described["members"].items()}
    missing = [s.name for s in topology.services if s.name not in members]
    if missing:
        raise DcfireError(
            f"dcfire_share = session: the shared copy (session {owner.id}) has no instance "
            f"{', '.join(missing)}; every worker must load the same topology as the controller"
        )
    teardown = teardown or Teardown.for_settings(settings)
    with contextlib.ExitStack() as unwind:
        unwind.callback(lambda: _report(teardown.close(), progress))
        engine = _connect(identity, teardown)
        faults = _backend(engine, topology, progress, teardown, owner=owner)
        system = System.attach(
            engine,
            topology,
            progress,
            owner,
            str(described["network"]),
            str(described["subnet"]),
            members,
        )
        _hold(system, faults, progress, teardown)
        faults.attach_pools([Pool(**p) for p in described["pools"]], owner.id)
        faults.warm()
        links: Links | None = None
        if described.get("links") is not None:
            links = Links(settings, owner.id, progress).attach_shared(described["links"], system)
            teardown.push("links", links.close)
        adoptions = _adoptions(engine, system, faults, settings, progress, on_join)
        unwind.pop_all()
    return Runtime(engine, faults, system, links, adoptions, teardown)


def _report(problems: list[str], progress: Progress) -> None:
    for problem in problems:
        progress(f"cleanup problem: {problem}")


__all__ = ["Retention", "Runtime", "Teardown", "attach", "start", "start_adopted"]
