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
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, NoReturn, TypeVar

from pytest_dcfire.config import INI_TOXIPROXY, Settings
from pytest_dcfire.errors import DcfireError
from pytest_dcfire.faults.backend import FaultBackend
from pytest_dcfire.faults.helper import Helper, helper_image_tag, plugin_version, thawer
from pytest_dcfire.faults.storage import Pool
from pytest_dcfire.links import Links
from pytest_dcfire.runtime import reuse
from pytest_dcfire.runtime.adopt import Adoptions
from pytest_dcfire.runtime.clocks import Clocks
from pytest_dcfire.runtime.engine import (
    L_PID,
    L_ROLE,
    L_SERVICE,
    L_SESSION,
    L_SHARED,
    L_SITE,
    LABEL,
    Engine,
    SessionIdentity,
)
from pytest_dcfire.runtime.handles import ServiceHandle
from pytest_dcfire.runtime.reaper import reap_dead_sessions
from pytest_dcfire.runtime.system import System
from pytest_dcfire.topology.model import Topology

Progress = Callable[[str], None]
T = TypeVar("T")
Joined = Callable[[ServiceHandle], None]
#: What `close` does with the system: remove it, keep it (`--dcfire-keep`), keep it for
#: the next session (`--dcfire-reuse`: faults undone, the helper and its pools kept too), or
#: leave it as found (a kept system found unfit for reuse: the fresh start removes it).
Retention = Literal["remove", "keep", "reuse", "leave"]
#: Seconds a kept system's services get to pass their health checks before it is replaced.
REUSE_HEALTH_S = 10.0


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
    keep_system: bool,
    owner: SessionIdentity | None = None,
    helper_container: str | None = None,
    reusable: bool = False,
) -> FaultBackend:
    """The fault backend and its helper; `keep_system`: a SIGKILL of this process only
    undoes the faults (--dcfire-keep, --dcfire-reuse) instead of removing the session;
    `reusable`: its agent stays for the next session (--dcfire-reuse)."""
    faults = FaultBackend(
        engine,
        topology,
        progress,
        owner=owner,
        helper_container=helper_container,
        keep_system=keep_system,
        reusable=reusable,
    )
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
        if teardown.retention == "keep":
            progress(system.keep_instructions())
        elif teardown.retention == "reuse":
            progress(
                f"kept the system of session {system.session_id} for the next run "
                "(--dcfire-reuse); `pytest --dcfire-clean` removes it"
            )
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
    stale: Sequence[str] = (),
) -> Runtime:
    """Start the system under test; `serving`: the xdist controller's shared copy, whose
    dead workers are reaped first at teardown; `stale`: kept systems (sessions) found unfit
    for reuse, removed first."""
    teardown = teardown or Teardown.for_settings(settings)
    with contextlib.ExitStack() as unwind:
        unwind.callback(lambda: _report(teardown.close(), progress))
        # Reached (or started) first: a wrong dcfire_toxiproxy fails before any container.
        links = Links(settings, identity.id, progress).start()
        teardown.push("links", links.close)  # the server, if construction stops early
        engine = _connect(identity, teardown)
        faults = _backend(
            engine,
            topology,
            progress,
            teardown,
            settings.keeps_system,
            reusable=settings.reuse and bool(topology.services),
        )
        report = reap_dead_sessions(engine.client, thaw=faults.thaw_dead, sessions=stale)
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
        if settings.reuse and topology.services:
            _reusable(engine, topology, settings, links, teardown)
        unwind.pop_all()
    return Runtime(engine, faults, system, links, adoptions, teardown, reaped)


def _reusable(
    engine: Engine, topology: Topology, settings: Settings, links: Links, teardown: Teardown
) -> None:
    """Mark the system reusable once it is whole (a half-started one is removed), and
    record its last use again when the session ends."""
    key = reuse.reuse_key(topology, engine.session.worker)
    printed = reuse.fingerprint(
        engine, topology, settings.toxiproxy, plugin_version(), helper_image_tag()
    )
    ports = links.link_ports(topology)

    def record() -> None:
        reuse.write_record(engine, key, printed, settings.reuse_ttl, ports)

    record()
    teardown.retention = "reuse"
    teardown.push("reuse record", lambda: record() if teardown.retention == "reuse" else None)


def resume(
    settings: Settings,
    topology: Topology,
    identity: SessionIdentity,
    progress: Progress,
    *,
    on_join: Sequence[Joined] = (),
    teardown: Teardown | None = None,
) -> Runtime | None:
    """Take over the system a previous session kept for reuse (--dcfire-reuse): the same
    fingerprint, every container running, its leftover faults undone, every service healthy,
    the links in place. None when there is none; NotReusable (saying why) when the kept one
    does not fit, which is then left for `start(stale=...)` to remove."""
    probe = Engine.connect(identity)
    key = reuse.reuse_key(topology, identity.worker)
    try:
        record = reuse.find(probe, key)
    except Exception:
        probe.close()
        raise
    if record is None:
        probe.close()
        return None
    session = record.session
    teardown = teardown or Teardown("reuse")
    teardown.retention = "reuse"  # never removed from here: `start(stale=...)` does that

    def refuse(reason: str) -> NoReturn:
        teardown.retention = "leave"
        raise reuse.NotReusable(session, reason) from None

    with contextlib.ExitStack() as unwind:
        unwind.callback(lambda: _report(teardown.close(), progress))
        engine = dataclasses.replace(probe, session=identity.resumed(session))
        teardown.push("engine", lambda: engine.close())
        if record.in_use:  # not ours to remove either
            teardown.retention = "leave"
            raise reuse.NotReusable(
                session, f"another pytest (pid {record.labels.get(L_PID)}) uses it", remove=False
            )
        if any(s.clock == "controllable" for s in topology.services):
            refuse("services with `clock: controllable` are started afresh every run")
        # The links' server needs no engine call: it comes up while the system is checked.
        links_started = _beside(Links(settings, session, progress).start)
        teardown.push("links", lambda: _close_started(links_started))
        # Ours from now on: no other session's cleanup removes it while we run.
        printed = reuse.fingerprint(
            engine, topology, settings.toxiproxy, plugin_version(), helper_image_tag()
        )
        # (With what made it: if it does not fit, it must not look as if it did.)
        reuse.write_record(engine, key, record.fingerprint, settings.reuse_ttl, record.link_ports)
        changed = record.fingerprint.difference(printed)
        if changed is not None:
            refuse(changed)
        network, containers, helper = _kept_parts(engine, topology, refuse)
        faults = _backend(
            engine,
            topology,
            progress,
            teardown,
            settings.keeps_system,
            helper_container=helper,
            reusable=True,
        )
        if faults.helper is None or faults.helper.container_id != helper:
            refuse("its helper container could not be taken over")
        faults.targets.learn(c.attrs for c in containers.values())
        faults.adopt_pools(_kept_pools(engine))
        try:
            undone = faults.undo_leftovers()
        except Exception as exc:
            refuse(f"undoing the faults left on it failed: {exc}")
        if undone:
            progress(f"undid what the previous run left applied: {', '.join(undone)}")
        links = links_started.result()
        system = System.resume(
            engine, topology, faults.volumes, progress, network, containers, wiring=links
        )
        _hold(system, faults, progress, teardown)

        def wire() -> None:
            links.reopen(system, record.link_ports)
            links.attach(system)

        # The proxies are made while the health checks run (these probe the containers).
        wired = _beside(wire)
        try:
            system.wait_healthy(list(system.services.values()), timeout=REUSE_HEALTH_S)
        except DcfireError as exc:
            wired.exception()  # done with the links before the refusal unwinds them
            refuse(str(exc).splitlines()[0])
        if wired.exception() is not None:
            refuse(f"its links could not be put back: {wired.exception()}")
        faults.warm()
        adoptions = _adoptions(engine, system, faults, settings, progress, on_join)
        ports = links.link_ports(topology)
        teardown.push(
            "reuse record",
            lambda: (
                reuse.write_record(engine, key, printed, settings.reuse_ttl, ports)
                if teardown.retention == "reuse"
                else None
            ),
        )
        unwind.pop_all()
    progress(
        f"reusing the system of session {session} ({len(system.services)} service "
        f"instance(s) healthy; kept {time.time() - record.last_used:.0f} s ago)"
    )
    return Runtime(engine, faults, system, links, adoptions, teardown)


def _kept_parts(
    engine: Engine, topology: Topology, refuse: Callable[[str], NoReturn]
) -> tuple[Any, dict[str, Any], str]:
    """The network, the service containers (by instance) and the helper of a kept system,
    each running; a paused container (a freeze the previous run left) is thawed. One list
    call says what is there; the service containers are then inspected side by side."""
    networks = list(engine.owned("networks"))
    if len(networks) != 1:
        refuse("its network is gone")
    listed = engine.client.api.containers(
        all=True, filters={"label": f"{L_SESSION}={engine.session.id}"}
    )
    services: dict[str, str] = {}
    helper = ""
    for summary in listed:
        labels = summary.get("Labels") or {}
        if labels.get(L_ROLE) == "helper" and summary.get("State") == "running":
            helper = str(summary["Id"])
        elif labels.get(L_ROLE) == "service":
            services[str(labels.get(L_SERVICE, ""))] = str(summary["Id"])
    if not helper:
        refuse("its helper container is gone")
    for spec in topology.services:
        if spec.name not in services:
            refuse(f"the container of {spec.name} is gone (removed by hand?)")

    def inspect(name: str) -> Any:
        container = engine.client.containers.get(services[name])
        if container.status == "paused":
            container.unpause()
            container.reload()
        return container

    names = [spec.name for spec in topology.services]
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        containers = dict(zip(names, pool.map(inspect, names), strict=True))
    for name, found in containers.items():
        if found.status != "running":
            refuse(f"the container of {name} is {found.status}")
    return networks[0], containers, helper


def _beside(fn: Callable[[], T]) -> Future[T]:
    """Run `fn` in a thread of its own while the caller goes on."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)


def _close_started(started: Future[Links]) -> list[str]:
    """Close links started beside (`_beside`) once they are up; none if they never were."""
    return [] if started.exception() is not None else started.result().close()


def _kept_pools(engine: Engine) -> list[Pool]:
    """The storage pools of a kept system, from their volumes' labels and options."""
    pools = []
    for volume in engine.owned("volumes"):
        labels = volume.attrs.get("Labels") or {}
        if labels.get(L_ROLE) != "pool":
            continue
        device = str((volume.attrs.get("Options") or {}).get("device", ""))
        pools.append(
            Pool(
                name=str(labels.get(f"{LABEL}.pool", "")),
                volume=str(volume.name),
                site=str(labels.get(L_SITE, "")),
                size_mb=0,
                device=device,
            )
        )
    return pools


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
        faults = _backend(engine, sites_only, progress, teardown, settings.keeps_system)
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
        faults = _backend(engine, topology, progress, teardown, settings.keeps_system, owner=owner)
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


__all__ = ["Retention", "Runtime", "Teardown", "attach", "resume", "start", "start_adopted"]


def clean(progress: Callable[[str], None]) -> int:
    """--dcfire-clean: remove every reusable system of this user that no live session uses
    (faults undone, pools thawed first, by a helper of our own); return how many."""
    engine = Engine.connect(SessionIdentity.new())
    try:
        kept = reuse.mine(engine.client)
        for record in kept:
            if record.in_use:
                progress(f"session {record.session} is in use by pid {record.labels.get(L_PID)}")
        sessions = [r.session for r in kept if not r.in_use]
        if not sessions:
            progress("no reusable system to remove")
            return 0
        helper = Helper(engine, progress).start()
        try:
            report = reap_dead_sessions(engine.client, thaw=thawer(helper), sessions=sessions)
        finally:
            helper.close()
        for problem in report.problems:
            progress(f"cleanup problem: {problem}")
        progress(
            f"removed {len(sessions)} reusable system(s): {report.containers} container(s), "
            f"{report.volumes} volume(s), {report.networks} network(s)"
        )
        return len(sessions)
    finally:
        engine.close()
