"""One pytest session's dcfire state: settings, topology, and (lazily) the running system.

Nothing here starts before a test asks for `dcfire_topology`, so a run that never burns
anything pays nothing for the plugin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_dcfire.burn import SuiteBurn, hold_suite_burn
from pytest_dcfire.config import Settings
from pytest_dcfire.errors import DcfireError
from pytest_dcfire.runtime.engine import RETAIN_KEEP, RETAIN_REUSE, SessionIdentity
from pytest_dcfire.timeline import Timeline

if TYPE_CHECKING:  # Docker and the runtime load when a test first needs the system
    from pytest_dcfire.faults.backend import FaultBackend
    from pytest_dcfire.lifecycle import Runtime, Teardown
    from pytest_dcfire.links import Links
    from pytest_dcfire.modes import Effect
    from pytest_dcfire.runtime.adopt import ComposeProject
    from pytest_dcfire.runtime.engine import Engine
    from pytest_dcfire.runtime.system import System
    from pytest_dcfire.seams import FaultSpec, Handle
    from pytest_dcfire.steps import CallStep
    from pytest_dcfire.topology.model import Topology

Progress = Callable[[str], None]
Built = TypeVar("Built", "Runtime", "Runtime | None")


def _retain(settings: Settings | None) -> str:
    """The `L_RETAIN` label of what this session makes: kept (or reusable) after it ends."""
    if settings is None:
        return ""
    if settings.keep:
        return RETAIN_KEEP
    return RETAIN_REUSE if settings.reuse else ""


class DcfireSession:
    """One session's settings, topology, timeline and suite burn, and (once a test asks for
    it) its `Runtime`: the engine connection, the system, the fault backend and the links."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | None,
        progress: Progress,
        verbose: bool = False,
        *,
        burn: SuiteBurn | None = None,
        compose: ComposeProject | None = None,
        hooks: Any = None,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.progress = progress
        #: -v: every build step, even of a cached image.
        self.verbose = verbose
        #: --dcfire-burn (burn.py) and dcfire_adopt_compose (runtime/adopt.py).
        self.burn = burn if burn is not None else SuiteBurn(())
        self.compose = compose
        #: pytest's hook caller (`config.hook`), for the fire controller's hooks.
        self.hooks = hooks
        self.identity = SessionIdentity.new(
            worker=os.environ.get("PYTEST_XDIST_WORKER", "main"), retain=_retain(settings)
        )
        self.timeline = Timeline()
        self.runtime: Runtime | None = None
        #: The teardown of a runtime under construction (closed by an interruption).
        self._building: Teardown | None = None
        self._failure: str | None = None
        #: `dcfire_share = session` (share.py): in a worker, the controller's description of
        #: the shared copy to attach to; in the controller, True once it serves one.
        self.shared: dict[str, Any] | None = None
        self.serving = False

    # -- what the rest of the plugin reads --------------------------------------------------

    @property
    def system(self) -> System | None:
        return self.runtime.system if self.runtime is not None else None

    @property
    def faults(self) -> FaultBackend | None:
        return self.runtime.faults if self.runtime is not None else None

    @property
    def links(self) -> Links | None:
        return self.runtime.links if self.runtime is not None else None

    @property
    def engine(self) -> Engine | None:
        return self.runtime.engine if self.runtime is not None else None

    @property
    def reaped(self) -> str | None:
        """What the reaper removed before the system started, if anything."""
        return self.runtime.reaped if self.runtime is not None else None

    # -- the xdist controller's decisions ---------------------------------------------------

    def share(self, described: dict[str, Any]) -> None:
        """Attach to the shared copy the xdist controller runs, instead of starting one."""
        self.shared = described
        owner = str((described.get("identity") or {}).get("id", ""))
        self.identity = SessionIdentity.new(
            worker=self.identity.worker, shared=owner, retain=self.identity.retain
        )

    def refuse(self, failure: str) -> None:
        """Make every `start` fail with `failure` (the xdist controller could not burn)."""
        self._failure = failure

    # -- the runtime ------------------------------------------------------------------------

    def start(self) -> System:
        """Start the system under test once; later calls return it (or repeat the failure)."""
        if self.runtime is not None:
            return self.runtime.system
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
                self.runtime = self._attach(self.topology, self.shared)
                return self.runtime.system
            self.runtime = self._start(self.topology)
        except DcfireError as exc:
            self._failure = str(exc)
            raise
        self._ignite_suite_burn(self.runtime.system)
        return self.runtime.system

    def start_adopted(self) -> System:
        """The xdist controller's system when every worker owns its own copy: only the
        adopted compose containers, burned once for the whole run (`--dcfire-burn`)."""
        from pytest_dcfire import lifecycle

        if self.runtime is not None:
            return self.runtime.system
        if self._failure is not None:
            raise DcfireError(self._failure)
        topology = self.topology
        assert topology is not None
        try:
            adopted = self.runtime = self._build(lifecycle.start_adopted, topology)
            self._adopt_compose(adopted)
        except DcfireError as exc:
            self._burn_failed(exc)
        self._ignite_suite_burn(adopted.system)
        return adopted.system

    def _ignite_suite_burn(self, system: System) -> None:
        try:
            self.burn.ignite(system, self, self.hooks)
        except DcfireError as exc:
            self._burn_failed(exc)

    def _burn_failed(self, exc: DcfireError) -> None:
        self._failure = f"--dcfire-burn {', '.join(self.burn.sites)}: {exc}"
        for problem in self.close():
            self.progress(f"cleanup problem: {problem}")
        raise DcfireError(self._failure) from None

    def _build(
        self, factory: Callable[..., Built], topology: Topology, *args: Any, **kw: Any
    ) -> Built:
        """Run a runtime factory (lifecycle.py) with this session's settings, identity
        and progress, and a teardown that `close` can reach while it runs."""
        from pytest_dcfire.lifecycle import Teardown

        self._building = Teardown.for_settings(self.settings)
        try:
            return factory(
                self.settings,
                topology,
                self.identity,
                self.progress,
                *args,
                on_join=[self.burn.joined],
                teardown=self._building,
                **kw,
            )
        finally:
            self._building = None

    def _start(self, topology: Topology) -> Runtime:
        from pytest_dcfire import lifecycle

        stale: list[str] = []
        resumed = self._resume(topology, stale) if self.settings.reuse else None
        started = resumed or self._build(
            lifecycle.start, topology, verbose=self.verbose, serving=self.serving, stale=stale
        )
        self._adopt_compose(started)
        return started

    def _resume(self, topology: Topology, stale: list[str]) -> Runtime | None:
        """The system a previous session kept (--dcfire-reuse), if it fits; otherwise say
        why in one line and put it in `stale`, for the fresh start to remove."""
        from pytest_dcfire import lifecycle
        from pytest_dcfire.runtime.reuse import NotReusable

        if not topology.services:
            return None
        try:
            return self._build(lifecycle.resume, topology)
        except NotReusable as exc:
            self.progress(
                f"not reusing the kept system of session {exc.session}: {exc.reason}; "
                "starting a fresh one"
            )
            if exc.remove:
                stale.append(exc.session)
            return None

    def _attach(self, topology: Topology, described: dict[str, Any]) -> Runtime:
        from pytest_dcfire import lifecycle

        try:
            attached = self._build(lifecycle.attach, topology, described)
        except DcfireError:
            raise
        except Exception as exc:  # the engine says no to a container id, a network...
            raise DcfireError(
                f"attaching to the shared copy (dcfire_share = session) failed: {exc}"
            ) from None
        self._adopt_compose(attached, dark_sites=tuple(described.get("burn") or ()))
        hold_suite_burn(self.burn, attached, described)
        system = attached.system
        self.progress(
            f"attached to the shared copy of session {system.session_id} "
            f"({len(system.services)} service instance(s))"
        )
        return attached

    def _adopt_compose(self, runtime: Runtime, dark_sites: tuple[str, ...] = ()) -> None:
        """Adopt the compose project named in the ini file. Members the xdist controller
        already keeps dark (its session burn: `dark_sites` of a shared copy, `burn.held` of a
        worker's own) are adopted without a health wait."""
        if self.compose is None:
            return
        started = time.monotonic()
        try:
            held = self.burn.held
            self.compose.adopt_into(
                runtime.adoptions, dark=lambda m: m.id in held or m.site in dark_sites
            )
        except DcfireError:
            for problem in runtime.close():
                self.progress(f"cleanup problem: {problem}")
            raise
        self.progress(
            f"adopted compose project {self.compose.name}: {len(self.compose.members)} "
            f"container(s) healthy in {time.monotonic() - started:.1f} s"
        )

    def make_step(self, effect: Effect, spec: FaultSpec, handles: Sequence[Handle]) -> CallStep:
        """The fire controller's step factory: link cuts to the links, the rest to faults."""
        assert self.runtime is not None, "no system is running"
        if effect == "links":
            if self.runtime.links is None:  # the xdist controller's adopted-only system
                from pytest_dcfire.faults.timing import FaultTiming
                from pytest_dcfire.steps import CallStep

                return CallStep(
                    "links", lambda: FaultTiming("links", "no proxies", 0.0), lambda: None
                )
            return self.runtime.links.make_step(effect, spec, handles)
        return self.runtime.faults.make_step(effect, spec, handles)

    def close(self) -> list[str]:
        """Restore the suite burn, then close the runtime (its teardown removes everything,
        unless --dcfire-keep); return problems to report, never raise."""
        problems: list[str] = []
        try:
            self.burn.restore()
        except Exception as exc:
            problems.append(f"restoring the suite burn: {exc}")
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            problems += runtime.close()
        elif self._building is not None:  # interrupted while it was being built
            problems += self._building.close()
        return problems
