"""One pytest session's dcfire state: settings, topology, and (lazily) the running system.

Nothing here starts before a test asks for `dcfire_topology`, so a run that never burns
anything pays nothing for the plugin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_dcfire.burn import SuiteBurn
from pytest_dcfire.config import INI_TOXIPROXY, Settings
from pytest_dcfire.errors import DcfireError
from pytest_dcfire.fire import Timeline
from pytest_dcfire.runtime.engine import Engine, SessionIdentity

if TYPE_CHECKING:  # loaded by the topology or the adoption that needs them
    import pluggy

    from pytest_dcfire.faults.backend import FaultBackend
    from pytest_dcfire.fire import Step
    from pytest_dcfire.links import Links
    from pytest_dcfire.modes import Effect
    from pytest_dcfire.runtime.adopt import ComposeProject
    from pytest_dcfire.runtime.system import System
    from pytest_dcfire.seams import FaultSpec, Handle
    from pytest_dcfire.topology.model import Topology

Progress = Callable[[str], None]


class DcfireSession:
    """Owns the engine connection, the system under test, the fault backend and the timeline."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | None,
        progress: Progress,
        verbose: bool = False,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.progress = progress
        #: -v: every build step, even of a cached image.
        self.verbose = verbose
        self.identity = SessionIdentity.new(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
        self.timeline = Timeline()
        self.engine: Engine | None = None
        self.system: System | None = None
        self.faults: FaultBackend | None = None
        self.links: Links | None = None
        self._failure: str | None = None
        self.reaped: str | None = None
        #: --dcfire-burn (burn.py) and dcfire_adopt_compose (runtime/adopt.py), from configure.
        self.burn = SuiteBurn(())
        self.compose: ComposeProject | None = None
        self.hooks: pluggy.HookRelay | None = None
        #: `dcfire_share = session` (share.py): in a worker, the controller's description of
        #: the shared copy to attach to; in the controller, True once it serves one.
        self.shared: dict[str, Any] | None = None
        self.serving = False

    def share(self, described: dict[str, Any]) -> None:
        """Attach to the shared copy the xdist controller runs, instead of starting one."""
        self.shared = described
        owner = str((described.get("identity") or {}).get("id", ""))
        self.identity = SessionIdentity.new(worker=self.identity.worker, shared=owner)

    def refuse(self, failure: str) -> None:
        """Make every `start` fail with `failure` (the xdist controller could not burn)."""
        self._failure = failure

    def start(self) -> System:
        """Start the system under test once; later calls return it (or repeat the failure)."""
        if self.system is not None:
            return self.system
        if self._failure is not None:
            raise DcfireError(self._failure)
        if self.topology is None:
            raise DcfireError(
                "no topology configured: set dcfire_topology in pytest.ini (or pyproject.toml "
                "[tool.pytest.ini_options]) or pass --dcfire-topology PATH; for adopted "
                "containers only, declare their sites (dcfire_sites = east west) or adopt a "
                "compose project (dcfire_adopt_compose)"
            )
        if self.shared is not None and self.shared.get("failure") is not None:
            self._failure = (
                "the shared copy (dcfire_share = session) did not start in the xdist "
                f"controller: {self.shared['failure']}"
            )
            raise DcfireError(self._failure)
        try:
            if self.shared is not None:
                self.system = self._attach(self.topology, self.shared)
                return self.system
            self.system = self._start(self.topology)
        except DcfireError as exc:
            self._failure = str(exc)
            raise
        try:
            self.burn.ignite(self.system, self, self.hooks)
        except DcfireError as exc:
            self._failure = f"--dcfire-burn {', '.join(self.burn.sites)}: {exc}"
            for problem in self.close():
                self.progress(f"cleanup problem: {problem}")
            raise DcfireError(self._failure) from None
        return self.system

    def start_adopted(self) -> System:
        """The xdist controller's system when every worker owns its own copy: only the
        adopted compose containers (the one thing all workers share), so that the controller
        burns them once for the whole run (`--dcfire-burn`); nothing is started or created
        but the helper."""
        from dataclasses import replace

        from pytest_dcfire.faults.backend import FaultBackend
        from pytest_dcfire.runtime.system import System

        if self.system is not None:
            return self.system
        if self._failure is not None:
            raise DcfireError(self._failure)
        assert self.topology is not None
        sites_only = replace(self.topology, services=(), links=())
        try:
            self.engine = Engine.connect(self.identity)
            self.faults = FaultBackend(
                self.engine, sites_only, self.progress, keep_system=self.settings.keeps_system
            )
            system = System(self.engine, sites_only, self.faults.volumes, self.progress)
            self.faults.attach(system)
            self._adoptions(system)
            self.system = system
            self.burn.ignite(system, self, self.hooks)
        except DcfireError as exc:
            self._failure = f"--dcfire-burn {', '.join(self.burn.sites)}: {exc}"
            for problem in self.close():
                self.progress(f"cleanup problem: {problem}")
            raise DcfireError(self._failure) from None
        return system

    def _start(self, topology: Topology) -> System:
        from pytest_dcfire.faults.backend import FaultBackend
        from pytest_dcfire.links import Links
        from pytest_dcfire.runtime.clocks import Clocks
        from pytest_dcfire.runtime.reaper import reap_dead_sessions
        from pytest_dcfire.runtime.system import System

        # Reached (or started) first: a wrong dcfire_toxiproxy fails before any container.
        self.links = Links(self.settings, self.identity.id, self.progress).start()
        self.engine = Engine.connect(self.identity)
        self.faults = FaultBackend(
            self.engine, topology, self.progress, keep_system=self.settings.keeps_system
        )
        report = reap_dead_sessions(self.engine.client, thaw=self.faults.thaw_dead)
        if report.sessions:
            self.reaped = str(report)
            self.progress(self.reaped)
        controllable = [s.name for s in topology.services if s.clock == "controllable"]
        system = System(
            self.engine,
            topology,
            self.faults.volumes,
            self.progress,
            keep=self.settings.keep,
            wiring=self.links,
            verbose=self.verbose,
            clocks=Clocks(self.engine, controllable, self.progress) if controllable else None,
        )
        self.faults.attach(system)
        system.start()
        self.faults.warm()
        try:
            self.links.attach(system)
        except Exception as exc:
            # Nothing holds the system yet, so nothing else would remove it.
            system.stop()
            raise DcfireError(f"creating the link proxies ({INI_TOXIPROXY}) failed: {exc}") from exc
        self._adoptions(system)
        return system

    def _attach(self, topology: Topology, described: dict[str, Any]) -> System:
        from pytest_dcfire import share

        try:
            system = share.attach(self, described)
        except DcfireError:
            raise
        except Exception as exc:  # the engine says no to a container id, a network...
            raise DcfireError(
                f"attaching to the shared copy (dcfire_share = session) failed: {exc}"
            ) from None
        self._adoptions(system, dark_sites=tuple(described.get("burn") or ()))
        share.hold_suite_burn(self, system, described)
        self.progress(
            f"attached to the shared copy of session {system.session_id} "
            f"({len(system.services)} service instance(s))"
        )
        return system

    def _adoptions(self, system: System, dark_sites: tuple[str, ...] = ()) -> None:
        """Let tests adopt containers; adopt the compose project named in the ini file.
        Members the xdist controller already keeps dark (its session burn: `dark_sites` of a
        shared copy, `burn.held` of a worker's own) are adopted without a health wait."""
        from pytest_dcfire.runtime.adopt import Adoptions

        assert self.engine is not None and self.faults is not None
        adoptions = Adoptions(
            self.engine,
            system,
            self.faults.targets,
            self.progress,
            health_timeout=self.settings.recovery_timeout,
        )
        adoptions.on_join.append(self.burn.joined)
        system.adopter = adoptions
        if self.compose is not None:
            started = time.monotonic()
            try:
                held = self.burn.held
                self.compose.adopt_into(
                    adoptions, dark=lambda m: m.id in held or m.site in dark_sites
                )
            except DcfireError:
                system.stop()
                raise
            self.progress(
                f"adopted compose project {self.compose.name}: {len(self.compose.members)} "
                f"container(s) healthy in {time.monotonic() - started:.1f} s"
            )

    def _reap_workers(self) -> list[str]:
        """Remove the helpers of workers that died attached to our shared copy (SIGKILL):
        their agents undid their faults already; their mounts of our pools go with them."""
        from pytest_dcfire.runtime.engine import L_SHARED
        from pytest_dcfire.runtime.reaper import reap_dead_sessions

        assert self.engine is not None and self.faults is not None
        try:
            report = reap_dead_sessions(
                self.engine.client,
                thaw=self.faults.thaw_dead,
                label=f"{L_SHARED}={self.identity.id}",
            )
        except Exception as exc:
            return [f"reaping dead workers: {exc}"]
        if report.sessions:
            self.progress(f"xdist workers that died: {report}")
        return report.problems

    def make_step(self, effect: Effect, spec: FaultSpec, handles: Sequence[Handle]) -> Step:
        """The fire controller's step factory: link cuts to the links, the rest to faults."""
        if effect == "links":
            if self.links is None:  # the xdist controller's adopted-only system has none
                from pytest_dcfire.faults.timing import FaultTiming
                from pytest_dcfire.fire import CallStep

                return CallStep(
                    "links", lambda: FaultTiming("links", "no proxies", 0.0), lambda: None
                )
            return self.links.make_step(effect, spec, handles)
        assert self.faults is not None  # started (or attached) before any test burns
        return self.faults.make_step(effect, spec, handles)

    def close(self) -> list[str]:
        """Remove everything (unless --dcfire-keep); return problems to report, never raise."""
        problems: list[str] = []
        try:
            self.burn.restore()
        except Exception as exc:
            problems.append(f"restoring the suite burn: {exc}")
        if self.serving and self.engine is not None and self.faults is not None:
            problems += self._reap_workers()
        if self.links is not None:
            problems += self.links.close()
            self.links = None
        if self.faults is not None and not self.settings.keep:
            # Thaw and uncut before removing: a container blocked on a frozen pool makes the
            # engine's kill wait (12 s on Engine 20.10) and then fail.
            problems += self.faults.release()
        if self.system is not None:
            if self.settings.keep:
                self.progress(self.system.keep_instructions())
            else:
                problems += self.system.stop()
        if self.faults is not None and not self.settings.keep:
            problems += self.faults.close()
        elif self.faults is not None:
            problems += self.faults.release()
        if self.engine is not None:
            self.engine.close()
        self.system = None
        return problems
