"""Fires: a burning fire (`Fire`) and the per-test controller behind the `dcfire` fixture.

A fire is a list of fault steps applied in order and undone in reverse order, always; every
step is recorded before it is applied, so an interrupt between two steps still undoes the
first. What burns (`FireSpec`, firespec.py), the steps (steps.py) and the session's timeline
(timeline.py) live below this module, so that the layers under it never import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pytest_dcfire.clockfaults import ClockSpec, not_controllable
from pytest_dcfire.diskfaults import DiskKind, DiskSpec, check_volumes
from pytest_dcfire.errors import FireError
from pytest_dcfire.evidence import DrillEvidence
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.firespec import FireSpec, service_names
from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec
from pytest_dcfire.modes import Mode
from pytest_dcfire.recovery import Recovery, eventually, measure_recovery
from pytest_dcfire.seams import LinkFaults, RunningSystem, StepFactory
from pytest_dcfire.steps import CallStep, Step
from pytest_dcfire.timeline import FireRecord, Timeline

if TYPE_CHECKING:
    import pluggy
    import pytest

    from pytest_dcfire.chaos.schedule import Schedule
    from pytest_dcfire.drill_workload import DrillWorkload


#: The hookspecs (hookspecs.py) the fire controller calls around each fire.
FireHook = Literal[
    "pytest_dcfire_before_ignite",
    "pytest_dcfire_after_ignite",
    "pytest_dcfire_before_restore",
    "pytest_dcfire_after_restore",
]


class Fire:
    """A burning set of sites; a context manager that restores on exit, or `extinguish()`."""

    def __init__(self, controller: FireController, spec: FireSpec, record: FireRecord) -> None:
        self.controller = controller
        self.spec = spec
        self.record = record
        self._applied: list[Step] = []
        self._restored = False

    @property
    def sites(self) -> tuple[str, ...]:
        return self.spec.sites

    @property
    def mode(self) -> Mode:
        return self.spec.mode

    @property
    def burning(self) -> bool:
        return bool(self._applied) and not self._restored

    def __repr__(self) -> str:
        state = "burning" if self.burning else "out"
        return f"<Fire {self.spec.describe()} {state}>"

    def __enter__(self) -> Fire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.extinguish()

    def extinguish(self, wait: bool = True) -> None:
        """Undo this fire (reverse order), then wait for its sites' health checks (unless
        `wait=False`: a schedule waits once, when it stops)."""
        self.controller._extinguish(self, wait=wait)


def _direct_fault(kind: str, target: str, detail: str, test: str, step: Step) -> LinkFault:
    """A link fault made of one direct step (a flaky network): applied now, undone once."""
    fault = LinkFault(kind, target, detail, [], test)
    applied: list[Step] = []

    def undo(_: LinkFault) -> None:
        while applied:
            applied.pop().undo()

    fault.undo = undo
    try:
        applied.append(step)  # recorded before it is applied: always undone
        fault.steps.append(step.apply())
    except BaseException:
        fault.lift()
        raise
    fault.setup_ms = (time.monotonic() - fault.started) * 1000.0
    return fault


class FireController:
    """The `dcfire` fixture (`from pytest_dcfire import FireController` to annotate it):
    ignite fires (`fire`), link faults (`brownout`, `partition`, `flaky`) and clock faults
    (`clock`), run workloads and schedules, restore everything (`restore`, always done at
    teardown), and wait for recovery (`eventually`, `measure_recovery`)."""

    def __init__(
        self,
        system: RunningSystem,
        make_step: StepFactory,
        timeline: Timeline,
        recovery_timeout: float,
        hooks: pluggy.HookRelay | None = None,
        item: pytest.Item | None = None,
        links: LinkFaults | None = None,
        evidence: DrillEvidence | None = None,
    ) -> None:
        self.system = system
        self._links = links
        self.link_faults: list[LinkFault] = []
        self._make_step = make_step
        self._timeline = timeline
        self.recovery_timeout = recovery_timeout
        self._hooks = hooks
        self._item = item
        self.fires: list[Fire] = []
        self.last_ignition: float | None = None
        self.last_recovery: Recovery | None = None
        #: What this test proved: fires, workloads' histories, verdicts (see evidence.py);
        #: handed in by the `dcfire` fixture, which keeps it for the report.
        self.evidence = (
            evidence if evidence is not None else DrillEvidence(getattr(item, "nodeid", ""))
        )
        #: Sites kept dark by others (the suite burn): no health wait for them on restore.
        self.also_dark: Callable[[], Iterable[str]] = tuple
        #: Schedules started by `schedule()` / `chaos()`: `restore()` stops them first.
        self.schedules: list[Schedule] = []
        #: Container ids another process keeps dark (the xdist controller's session burn of
        #: adopted containers): never health-checked here, whatever this test restores.
        self.dark_elsewhere: Callable[[], Collection[str]] = frozenset

    @property
    def burning(self) -> tuple[str, ...]:
        """Sites burning right now through this test's fires."""
        return tuple(dict.fromkeys(s for f in self.fires if f.burning for s in f.sites))

    def fire(
        self,
        *sites: str,
        mode: Mode = "fire",
        network: bool = True,
        storage: bool | DiskKind = True,
    ) -> Fire:
        """Burn `sites` now; returns the burning `Fire` (use it as a context manager).
        `storage`: True (the mode's own), False, or a disk fault kind ("fail", "full")."""
        spec = FireSpec.parse(
            sites,
            {"mode": mode, "network": network, "storage": storage},
            self.system.sites,
            where="dcfire.fire",
        )
        return self.ignite(spec)

    def ignite_together(self, specs: Sequence[FireSpec]) -> list[Fire]:
        """Ignite several specs at once: those of the same mode become one fire (one cut)."""
        merged: dict[tuple[Mode, bool, bool | DiskKind], list[str]] = {}
        for spec in specs:
            sites = merged.setdefault((spec.mode, spec.network, spec.storage), [])
            sites.extend(s for s in spec.sites if s not in sites)
        return [
            self.ignite(FireSpec(tuple(sites), mode, network, storage))
            for (mode, network, storage), sites in merged.items()
        ]

    def ignite(self, spec: FireSpec) -> Fire:
        targets = [h for site in spec.sites for h in self.system.in_site(site)]
        record = FireRecord(
            spec=spec,
            test=getattr(self._item, "nodeid", ""),
            targets=[h.name for h in targets],
        )
        fire = Fire(self, spec, record)
        self.fires.append(fire)
        self._timeline.add(record)
        self._call_hook("pytest_dcfire_before_ignite", fire)
        record.ignited_wall = time.time()
        record.ignited = time.monotonic()
        self.last_ignition = record.ignited
        try:
            for effect in spec.effects():
                step = self._make_step(effect, spec, targets)
                # Recorded before it is applied: an interrupt inside apply() still undoes it.
                fire._applied.append(step)
                timing = step.apply()
                record.steps.append(timing)
                record.methods.append(timing.method)
        except BaseException:
            self._extinguish(fire, wait=False)
            raise
        record.cut_ms = (time.monotonic() - record.ignited) * 1000.0
        network = next((s for s in record.steps if s.effect in ("network", "pause")), None)
        record.skew_ms = (
            network.skew_ms if network else max((s.skew_ms for s in record.steps), default=0.0)
        )
        self.evidence.ignited(fire.record)
        self._call_hook("pytest_dcfire_after_ignite", fire)
        return fire

    def brownout(
        self,
        site_or_service: str,
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: int | None = None,
    ) -> LinkFault:
        """Degrade every link touching a site (or one service): latency and jitter in ms,
        one way, in each direction; bandwidth in KB/s. Lifted by `restore()` and at teardown
        (or use the returned record as a context manager)."""
        spec = BrownoutSpec.parse(
            (site_or_service,),
            {"latency": latency, "jitter": jitter, "bandwidth": bandwidth},
            self.system.sites,
            service_names(self.system.topology),
            where="dcfire.brownout",
        )
        return self.ignite_link_fault(spec)

    def partition(self, *groups: str | Sequence[str], one_way: bool = False) -> LinkFault:
        """Cut everything between two sites, and only that (split brain): the direct traffic
        between their containers (blackholed: it hangs) and the links between them. Both
        sites still reach themselves, the other sites and the test process, and DNS works.
        A group may be a list of sites (`partition(["a", "b"], "c")`: majority | minority);
        `one_way=True`: only what the first sends to the second vanishes (the other way
        passes). Undone by `restore()` and at teardown (or use the record as a context
        manager)."""
        spec = PartitionSpec.parse(
            groups, {"one_way": one_way}, self.system.sites, where="dcfire.partition"
        )
        return self.ignite_link_fault(spec)

    def flaky(self, target: str, loss: float) -> LinkFault:
        """Lose `loss` (a share, 0.01 to 1) of the packets to and from every container of a
        site or service, at random, each packet on its own: direct traffic and the links
        through Toxiproxy alike (loopback is spared). Undone by `restore()` and at teardown
        (or use the record as a context manager)."""
        spec = FlakySpec.parse(
            (target,),
            {"loss": loss},
            self.system.sites,
            service_names(self.system.topology),
            where="dcfire.flaky",
        )
        return self.ignite_link_fault(spec)

    def ignite_link_fault(self, spec: BrownoutSpec | PartitionSpec | FlakySpec) -> LinkFault:
        """Apply a validated brownout, partition or flaky network; `restore()` undoes it."""
        if self._links is None:
            raise FireError("link faults need links, and links are not running in this session")
        test = getattr(self._item, "nodeid", "")
        fault: LinkFault
        if isinstance(spec, PartitionSpec):
            # Every container of both sites as they are now, adopted ones included.
            handles = [h for site in spec.sites for h in self.system.in_site(site)]
            direct = self._make_step("peers", spec, handles)
            fault = self._links.partition(spec, test, direct=direct)
        else:
            handles = self._handles_of(spec.target)
            if isinstance(spec, FlakySpec):
                fault = _direct_fault(
                    "flaky",
                    spec.target,
                    spec.describe(),
                    test,
                    self._make_step("peers", spec, handles),
                )
            else:
                fault = self._links.brownout(spec, handles, test)
        self.link_faults.append(fault)
        self.evidence.link_fault(fault)
        self._timeline.add_link_fault(fault)
        return fault

    def clock(self, target: str, offset: float = 0.0, rate: float = 1.0) -> LinkFault:
        """Move the wall clock that a site's, a service's or an instance's processes read:
        a jump of `offset` seconds (forward or back) and a drift `rate` (2.0: twice as fast).
        Only `clock: controllable` services (libfaketime); the host's clock never moves.
        Lifted by `restore()` and at teardown (or use the record as a context manager)."""
        spec = ClockSpec.parse(
            (target,),
            {"offset": offset, "rate": rate},
            self.system.sites,
            service_names(self.system.topology),
            where="dcfire.clock",
        )
        return self.ignite_clock(spec)

    def ignite_clock(self, spec: ClockSpec) -> LinkFault:
        """Apply a validated clock fault; it is undone by `restore()`."""
        where = f"dcfire.clock({spec.target!r})"
        handles = self._handles_of(spec.target)
        fixed = [h for h in handles if getattr(h.spec, "clock", "host") != "controllable"]
        if fixed:
            raise not_controllable(where, [h.spec.base for h in fixed], self.system.topology.source)
        clocks = getattr(self.system, "clocks", None)
        if clocks is None or not handles:
            raise FireError(f"{where}: no clock volume in this session (a shared system?)")
        instances = [h.name for h in handles]
        test = getattr(self._item, "nodeid", "")
        fault = LinkFault("clock", spec.target, spec.describe(), [], test)

        def undo(_: LinkFault) -> None:
            clocks.set(instances, "+0")

        fault.undo = undo
        self.link_faults.append(fault)  # recorded before it is applied: always lifted
        try:
            ms = clocks.set(instances, spec.timestamp())
        except BaseException:
            fault.lift()
            raise
        fault.steps.append(StepTiming("clock", "libfaketime", ms))
        fault.setup_ms = (time.monotonic() - fault.started) * 1000.0
        self.evidence.link_fault(fault)
        self._timeline.add_link_fault(fault)
        return fault

    def disk(self, target: str, kind: DiskKind) -> LinkFault:
        """A disk fault on every volume of a site, a service or one instance, while
        everything else keeps running: "freeze" (I/O blocks), "fail" (EIO; lifting mounts
        the pool again and restarts the containers that use it) or "full" (ENOSPC on
        writes). Lifted by `restore()` and at teardown (or use it as a context manager)."""
        spec = DiskSpec.parse(
            (target, kind),
            {},
            self.system.sites,
            service_names(self.system.topology),
            where="dcfire.disk",
        )
        return self.ignite_disk(spec)

    def ignite_disk(self, spec: DiskSpec) -> LinkFault:
        """Apply a validated disk fault; `restore()` lifts it."""
        check_volumes(spec, self.system.topology, f"dcfire.disk({spec.target!r}, {spec.kind!r})")
        handles = self._handles_of(spec.target)
        step = self._make_step("disk", spec, handles)
        if spec.kind == "fail":  # lifted: its containers were started again
            ours = [h for h in handles if not getattr(h, "adopted", False)]
            failed = step

            def lift() -> None:
                failed.undo()
                self.system.wait_healthy(ours)

            step = CallStep("storage", failed.apply, lift)
        test = getattr(self._item, "nodeid", "")
        fault = _direct_fault("disk", spec.target, spec.describe(), test, step)
        self.link_faults.append(fault)
        self.evidence.link_fault(fault)
        self._timeline.add_link_fault(fault)
        return fault

    def _handles_of(self, target: str) -> list[Any]:
        """The containers of a site, or of a service's instances, or of one instance."""
        if target in self.system.sites:
            return list(self.system.in_site(target))
        return [h for h in self.system if target in (h.name, h.spec.base)]

    @property
    def brownouts(self) -> list[LinkFault]:
        return [f for f in self.link_faults if f.kind == "brownout"]

    def restore(self) -> None:
        """Restore everything this test burned, most recent fire first."""
        errors: list[BaseException] = []
        for schedule in self.schedules:  # first: a running schedule would burn again
            try:
                schedule.halt()
            except BaseException as exc:
                errors.append(exc)
        for fault in reversed(self.link_faults):
            try:
                fault.lift()
            except BaseException as exc:
                errors.append(exc)
        for fire in reversed(self.fires):
            try:
                fire.extinguish()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _extinguish(self, fire: Fire, wait: bool = True) -> None:
        if fire._restored:
            return
        fire._restored = True
        self._call_hook("pytest_dcfire_before_restore", fire)
        started = time.monotonic()
        problems: list[str] = []
        for step in reversed(fire._applied):
            try:
                step.undo()
            except Exception as exc:  # keep undoing the rest: never leave half a site burning
                problems.append(f"undo {step.effect}: {exc}")
        fire.record.restored = time.monotonic()
        fire.record.restore_ms = (fire.record.restored - started) * 1000.0
        fire.record.errors.extend(problems)
        self.evidence.restored(fire.record)
        if problems:
            raise FireError(f"restoring {fire.spec.describe()} failed: " + "; ".join(problems))
        if wait:
            still = set(self.burning) | set(self.also_dark())
            elsewhere = self.dark_elsewhere()
            handles = [
                h
                for site in fire.sites
                if site not in still
                for h in self.system.in_site(site)
                if not elsewhere or getattr(h.container, "id", None) not in elsewhere
            ]
            self.system.wait_healthy(handles)
            fire.record.healthy_ms = (time.monotonic() - started) * 1000.0
        self._call_hook("pytest_dcfire_after_restore", fire)

    def workload(
        self, op: Callable[[int], Any], *, threads: int = 2, interval: float = 0.01, **options: Any
    ) -> DrillWorkload:
        """Call `op(n)` from `threads` background threads, `interval` s apart, recording a
        History (`.history`) marked with this test's ignitions and restores; a context
        manager. Its `lost_writes()`, `availability()`, `linearizable()` go to the report."""
        from pytest_dcfire.drill_workload import DrillWorkload

        return DrillWorkload(
            op,
            self.evidence,
            lambda: [f for f in self.fires if f.burning],
            threads=threads,
            interval=interval,
            **options,
        )

    def schedule(self, steps: Any, *, quiet: float | None = None) -> Schedule:
        """Run `steps` in the background: `(at, kind, target(s)[, {"for": s, ...}])` tuples,
        e.g. `[(0, "fire", "pangyo", {"for": 8}), (5, "fire", "ansan", {"for": 8})]`.
        Returns a `Schedule` (`.events`, `.stop()`, a context manager); see chaos/."""
        from pytest_dcfire.chaos import run as chaos
        from pytest_dcfire.chaos.schedule import DEFAULT_QUIET

        valid = chaos.targets_of(self.system)
        quiet = DEFAULT_QUIET if quiet is None else quiet
        schedule = chaos.schedule(self, steps, valid, quiet=quiet)
        self.schedules.append(schedule)
        return schedule

    def chaos(
        self,
        faults: Any = None,
        seed: int | None = None,
        duration: float = 30.0,
        interval: Any = 5.0,
        max_at_once: int = 1,
        *,
        hold: Any = None,
        quiet: float | None = None,
    ) -> Schedule:
        """Run a random schedule of `faults` (kind names; default all available) over the
        sites and services for `duration` s, a fault every `interval` s (drawn; a number or
        (low, high)), each lasting `hold` (default: like interval), at most `max_at_once` at
        a time. Only `random.Random(seed)` draws it; the seed (given, else --dcfire-seed,
        else new) is printed with the test's report and failure."""
        from pytest_dcfire.chaos import run as chaos
        from pytest_dcfire.chaos.schedule import DEFAULT_QUIET
        from pytest_dcfire.chaos.seed import replay_seed

        valid = chaos.targets_of(self.system, exclude=self.also_dark())
        schedule = chaos.chaos(
            self,
            valid,
            faults=faults,
            seed=seed,
            replay=replay_seed(getattr(self._item, "config", None)),
            duration=duration,
            interval=interval,
            hold=hold,
            max_at_once=max_at_once,
            quiet=DEFAULT_QUIET if quiet is None else quiet,
        )
        self.schedules.append(schedule)
        if schedule.seed is not None:
            self.evidence.seeds.append(schedule.seed)
        return schedule

    def eventually(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Retry `fn` until it neither raises nor returns False (default: recovery timeout)."""
        return eventually(fn, timeout if timeout is not None else self.recovery_timeout)

    def measure_recovery(
        self, probe: Callable[[], Any], timeout: float | None = None, stable: int = 3
    ) -> Recovery:
        """Probe until `stable` successes in a row; `.rto` runs from the last ignition to the
        moment the first of them *answered* (a hanging probe is not yet a success), and is
        what the fire table, the report and `dcfire_rto_s` show for the last fire."""
        since = self.last_ignition if self.last_ignition is not None else time.monotonic()
        recovery = measure_recovery(
            probe,
            since=since,
            timeout=timeout if timeout is not None else self.recovery_timeout,
            stable=stable,
        )
        self.last_recovery = recovery
        if self.fires:
            self.fires[-1].record.rto_s = recovery.rto
        return recovery

    def _call_hook(self, name: FireHook, fire: Fire) -> None:
        if self._hooks is not None:
            getattr(self._hooks, name)(fire=fire, item=self._item)
