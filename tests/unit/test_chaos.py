"""Schedules and seeded chaos as pure logic: the random generator, step validation, and the
timed runner against a fake controller that has exactly the members the runner uses (checked
against the `Controller` protocol). Real faults are burned in tests/docker/test_chaos_schedules.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_dcfire import chaos
from pytest_dcfire.chaos import ChaosError, Controller, Schedule, Step, Targets
from pytest_dcfire.chaos.generator import generate, parse_kinds, parse_span
from pytest_dcfire.chaos.kinds import KINDS, NOT_YET
from pytest_dcfire.chaos.schedule import parse_steps
from pytest_dcfire.chaos.seed import parse_seed
from pytest_dcfire.diskfaults import DiskKind
from pytest_dcfire.errors import ConfigError
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.fire import FireController
from pytest_dcfire.linkfaults import BrownoutSpec, LinkFault, PartitionSpec
from pytest_dcfire.modes import Effect
from pytest_dcfire.recovery import eventually
from pytest_dcfire.seams import FaultSpec, Handle
from pytest_dcfire.steps import Step as FireStep
from pytest_dcfire.timeline import Timeline
from pytest_dcfire.topology.model import Service, Site, Topology

SITES = Targets(
    ("pangyo", "ansan", "daejeon"),
    {"api": ("pangyo", "ansan"), "api@pangyo": ("pangyo",), "api@ansan": ("ansan",)},
)


def draw(seed: int, faults: Any = None, max_at_once: int = 1, **kw: Any) -> list[Step]:
    return generate(
        parse_kinds(faults, SITES),
        SITES,
        seed,
        duration=kw.get("duration", 120.0),
        interval=parse_span("interval", kw.get("interval", 2.0)),
        hold=parse_span("hold", kw.get("hold", 6.0)),
        max_at_once=max_at_once,
    )


# -- the generator ----------------------------------------------------------------------------


def test_same_seed_same_schedule() -> None:
    first, again = draw(1234), draw(1234)
    assert first == again
    assert len(first) > 10
    # every kind drawn over 10 minutes (no clock: nothing in SITES has a controllable clock)
    longer = draw(1234, duration=600.0)
    assert {s.kind for s in longer} == set(KINDS) - {"clock", "disk"}


def test_different_seeds_differ() -> None:
    schedules = {tuple(draw(seed)) for seed in range(20)}
    assert len(schedules) == 20
    a, b = draw(1), draw(2)
    assert [(s.kind, s.targets) for s in a] != [(s.kind, s.targets) for s in b]


def test_seed_alone_drives_the_draw() -> None:
    """The global random state does not leak in (only random.Random(seed) draws)."""
    import random

    random.seed(1)
    first = draw(77)
    random.seed(2)
    assert draw(77) == first


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_max_at_once_and_no_shared_site(limit: int) -> None:
    steps = draw(5, max_at_once=limit, interval=0.5, hold=(4.0, 8.0))
    peak = 0
    for step in steps:
        overlapping = [o for o in steps if o.at <= step.at < o.at + (o.hold or 0)]
        peak = max(peak, len(overlapping))
        sites = [s for o in overlapping for t in o.targets for s in SITES.sites_of(t)]
        assert len(sites) == len(set(sites)), f"{step}: shares a site with {overlapping}"
    assert peak == limit  # reached, never exceeded


def test_every_fault_lifted_within_duration() -> None:
    for step in draw(9, duration=20.0):
        assert step.hold is not None and step.hold > 0
        assert step.at + step.hold <= 20.0 + 1e-9


def test_only_the_kinds_asked_for() -> None:
    steps = draw(3, faults=["partition"])
    assert {s.kind for s in steps} == {"partition"}
    assert all(len(s.targets) == 2 and s.targets[0] != s.targets[1] for s in steps)
    brownouts = draw(3, faults="brownout")
    assert all(s.options["latency"] > 0 for s in brownouts)


def test_one_way_and_flaky_are_drawn_with_their_targets_and_options() -> None:
    one_way = draw(5, faults=["one-way"], duration=200.0)
    pairs = {s.targets for s in one_way}
    assert all(len(p) == 2 and p[0] != p[1] for p in pairs)
    assert any((b, a) in KINDS["one-way"].candidates(SITES) for a, b in pairs)  # both ways
    assert len(KINDS["one-way"].candidates(SITES)) == 6
    flaky = draw(5, faults=["flaky"])
    assert all(0 < s.options["loss"] <= 1 for s in flaky)
    assert all(len(s.targets) == 1 for s in flaky)


def test_one_way_and_flaky_steps_are_checked() -> None:
    steps = parse_steps(
        "dcfire.schedule",
        [(0, "one-way", ("ansan", "pangyo")), (1, "flaky", "api@ansan", {"loss": 0.3})],
        SITES,
    )
    assert steps[0].describe() == "one-way ansan -> pangyo"
    assert steps[1].describe() == "flaky api@ansan (loss=0.3)"
    with pytest.raises(ConfigError, match="one-way takes two different sites"):
        parse_steps("dcfire.schedule", [(0, "one-way", "ansan")], SITES)
    with pytest.raises(ConfigError, match="loss=3 must be a share of packets"):
        parse_steps("dcfire.schedule", [(0, "flaky", "ansan", {"loss": 3})], SITES)


def test_runner_applies_one_way_and_flaky_through_the_controller() -> None:
    ctl, schedule = run(
        [
            (0.0, "one-way", ("ansan", "pangyo"), {"for": 0.1}),
            (0.05, "flaky", "daejeon", {"loss": 0.2, "for": 0.1}),
        ]
    )
    schedule.wait(timeout=10)
    assert sorted((a, w) for a, w, _ in ctl.log) == [
        ("apply", "flaky daejeon 0.2"),
        ("apply", "partition ansan->pangyo"),
        ("lift", "flaky daejeon 0.2"),
        ("lift", "partition ansan->pangyo"),
    ]


def test_every_pinned_kind_is_available() -> None:
    assert not NOT_YET
    assert "disk" in KINDS


def test_disk_kind_draws_only_targets_with_volumes() -> None:
    with_disks = Targets(SITES.sites, SITES.services, disks=("pangyo", "api@pangyo"))
    assert "disk" not in [k.name for k in parse_kinds(None, SITES)]  # no volumes: left out
    assert "disk" in [k.name for k in parse_kinds(None, with_disks)]
    with pytest.raises(ConfigError, match="'disk' needs a site or service with volumes"):
        parse_kinds(["disk"], SITES)
    steps = generate(
        parse_kinds(["disk"], with_disks),
        with_disks,
        3,
        duration=60,
        interval=(1.0, 2.0),
        hold=(1.0, 2.0),
        max_at_once=1,
    )
    assert steps
    assert {s.targets for s in steps} <= {("pangyo",), ("api@pangyo",)}
    assert {s.options["kind"] for s in steps} <= {"freeze", "fail", "full"}


def test_unknown_kind_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        parse_kinds(["fier"], SITES)
    message = str(info.value)
    assert "unknown fault kind 'fier' (did you mean 'fire'?)" in message
    assert "available kinds: fire, power-loss, crash, freeze, partition, brownout" in message


def test_partition_needs_two_sites() -> None:
    with pytest.raises(ConfigError, match="'partition' needs two sites"):
        parse_kinds(["partition"], Targets(("alone",)))


@pytest.mark.parametrize(
    ("key", "value"), [("interval", 0), ("interval", (3, 1)), ("hold", -1), ("hold", "5")]
)
def test_spans_validated(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_span(key, value)


@pytest.mark.parametrize("value", [-1, "x", 1.5, True, "-3"])
def test_seed_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match="give an integer >= 0"):
        parse_seed("--dcfire-seed", value)
    assert parse_seed("--dcfire-seed", " 42 ") == 42


# -- steps ----------------------------------------------------------------------------------


def test_steps_parse_and_sort() -> None:
    steps = parse_steps(
        "dcfire.schedule",
        [
            (5, "fire", "ansan", {"for": 5}),
            (0.0, "fire", ("pangyo",), {"for": 5}),
            Step(1.0, "brownout", ("api",), 2.0, {"latency": 100}),
            (2, "partition", ["pangyo", "daejeon"]),
        ],
        SITES,
    )
    assert [(s.at, s.kind, s.targets, s.hold) for s in steps] == [
        (0.0, "fire", ("pangyo",), 5.0),
        (1.0, "brownout", ("api",), 2.0),
        (2.0, "partition", ("pangyo", "daejeon"), None),
        (5.0, "fire", ("ansan",), 5.0),
    ]
    assert str(steps[2]) == "2 s: partition pangyo | daejeon until stopped"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ((0, "fire", "seoul"), "unknown site 'seoul'; valid sites: pangyo, ansan, daejeon"),
        ((0, "disk", "pangyo"), "disk takes one site or service with volumes"),
        ((0, "flaky", "pangyo"), "give loss="),
        ((-1, "fire", "pangyo"), "at=-1 must be a number of seconds >= 0"),
        ((0, "fire", "pangyo", {"for": 0}), "'for'=0 must be a number of seconds > 0"),
        ((0, "fire", "pangyo", {"four": 1}), "unknown keyword 'four' (did you mean 'for'?)"),
        ((0, "partition", "pangyo"), "partition takes two different sites"),
        ((0, "brownout", "api"), "give latency=, jitter= or bandwidth="),
        ((0, "brownout", "api", {"latency": -5}), "latency=-5 must be a number of ms"),
        ((0, "fire"), "a step is (at, kind, target(s))"),
    ],
)
def test_bad_steps_name_the_step(step: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_steps("dcfire.schedule", [(0, "fire", "ansan"), step], SITES)
    assert f"dcfire.schedule: step 1 {step!r}" in str(info.value)
    assert message in str(info.value)


# -- the runner, against a fake controller ---------------------------------------------------


class FakeHandle:
    def __init__(self, log: list[tuple[str, str, float]], what: str) -> None:
        self.log, self.what = log, what

    def extinguish(self, wait: bool = True) -> None:
        assert wait is False  # the schedule waits for health once, at the end
        self.log.append(("lift", self.what, time.monotonic()))

    def lift(self) -> None:
        self.log.append(("lift", self.what, time.monotonic()))


@dataclass
class FakeSystem:
    healthy: list[list[str]]

    def in_site(self, site: str) -> Sequence[str]:
        return [f"svc@{site}"]

    def wait_healthy(self, handles: Sequence[Any]) -> Any:
        self.healthy.append(list(handles))


class FakeController:
    """Exactly the members of `Controller`, recording what was applied and lifted."""

    def __init__(self, fail: str | None = None) -> None:
        self.log: list[tuple[str, str, float]] = []
        self.system = FakeSystem([])
        self.fail = fail
        self.lock = threading.Lock()

    @property
    def burning(self) -> tuple[str, ...]:
        return ()

    def _apply(self, what: str) -> FakeHandle:
        if self.fail and what.startswith(self.fail):
            raise RuntimeError("the engine said no")
        self.log.append(("apply", what, time.monotonic()))
        return FakeHandle(self.log, what)

    def fire(
        self,
        *sites: str,
        mode: str = "fire",
        network: bool = True,
        storage: bool | DiskKind = True,
    ) -> FakeHandle:
        return self._apply(f"{mode} {'+'.join(sites)}")

    def partition(self, *groups: str | Sequence[str], one_way: bool = False) -> FakeHandle:
        sep = "->" if one_way else "|"
        return self._apply(f"partition {sep.join(map(str, groups))}")

    def flaky(self, target: str, loss: float) -> FakeHandle:
        return self._apply(f"flaky {target} {loss:g}")

    def brownout(
        self,
        site_or_service: str,
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: int | None = None,
    ) -> FakeHandle:
        return self._apply(f"brownout {site_or_service} {latency:g}")

    def clock(self, target: str, offset: float = 0.0, rate: float = 1.0) -> FakeHandle:
        return self._apply(f"clock {target} {offset:+g}")

    def disk(self, target: str, kind: DiskKind) -> FakeHandle:
        return self._apply(f"disk {target} {kind}")


def test_fake_controller_matches_the_protocol() -> None:
    fake: Controller = FakeController()  # mypy checks the members' signatures here
    assert isinstance(fake, Controller)
    real = FireController(FakeSystem([]), None, Timeline(), 1.0)  # type: ignore[arg-type]
    assert isinstance(real, Controller)


def run(steps: list[Any], **kw: Any) -> tuple[FakeController, Schedule]:
    ctl = FakeController(kw.pop("fail", None))
    parsed = parse_steps("dcfire.schedule", steps, SITES)
    return ctl, Schedule(ctl, parsed, quiet=kw.pop("quiet", 0.0), **kw).start()


def test_runner_applies_and_lifts_on_time() -> None:
    ctl, schedule = run(
        [
            (0.0, "fire", "pangyo", {"for": 0.3}),
            (0.1, "freeze", "ansan", {"for": 0.1}),
            (0.15, "brownout", "api@ansan", {"latency": 50, "for": 0.2}),
            (0.25, "partition", ("ansan", "daejeon")),
        ]
    )
    assert schedule.started is not None
    events = schedule.wait(timeout=10)  # every step run, then stop() lifts the partition
    t0 = schedule.started
    times = {(action, what): round(at - t0, 2) for action, what, at in ctl.log}
    assert [(a, w) for a, w, _ in ctl.log] == [
        ("apply", "fire pangyo"),
        ("apply", "freeze ansan"),
        ("apply", "brownout api@ansan 50"),
        ("lift", "freeze ansan"),
        ("apply", "partition ansan|daejeon"),
        ("lift", "fire pangyo"),
        ("lift", "brownout api@ansan 50"),
        ("lift", "partition ansan|daejeon"),  # by stop(): it had no "for"
    ]
    for (action, what), due in {
        ("apply", "fire pangyo"): 0.0,
        ("apply", "freeze ansan"): 0.1,
        ("lift", "freeze ansan"): 0.2,
        ("apply", "partition ansan|daejeon"): 0.25,
        ("lift", "fire pangyo"): 0.3,
    }.items():
        # never early; the bound only catches a runner waiting for the wrong time (the
        # lateness itself is measured by benchmarks/bench_chaos.py, not asserted)
        assert due <= times[(action, what)] < due + 1.0, (action, what, times)
    assert [e.kind for e in events] == ["fire", "freeze", "brownout", "partition"]
    assert all(e.applied is not None and e.lifted is not None for e in events)
    late, wake = events[0].late_ms, events[0].wake_ms
    assert late is not None and wake is not None and 0 <= wake <= late
    assert str(events[3]).startswith("partition ansan | daejeon: applied at ")
    assert "(due 0.250 s," in str(events[3]) and ", lifted at " in str(events[3])
    # the darkened sites (fire, freeze) health-checked once, after everything was lifted
    assert ctl.system.healthy == [["svc@pangyo", "svc@ansan"]]
    assert not schedule.running and schedule.active == []


def test_stop_early_lifts_and_skips_the_rest() -> None:
    ctl, schedule = run([(0, "fire", "pangyo", {"for": 30}), (20, "fire", "ansan")])
    eventually(lambda: len(schedule.events) > 0, timeout=10)
    with schedule:
        assert [e.kind for e in schedule.active] == ["fire"]
    assert [(a, w) for a, w, _ in ctl.log] == [("apply", "fire pangyo"), ("lift", "fire pangyo")]
    assert str(schedule.events[0]).endswith(" s")
    assert "still applied" not in str(schedule.events[0])
    schedule.stop()  # idempotent
    assert len(ctl.log) == 2


def test_unlifted_event_says_so() -> None:
    _, schedule = run([(0, "fire", "pangyo")])
    eventually(lambda: len(schedule.events) > 0, timeout=10)
    assert "still applied" in str(schedule.events[0])
    schedule.stop()


def test_quiet_period_after_stop() -> None:
    _, schedule = run([(0, "fire", "pangyo", {"for": 0.05})], quiet=0.3)
    started = time.monotonic()
    schedule.wait()
    assert time.monotonic() - started >= 0.3


def test_failed_step_stops_the_schedule_lifts_and_raises() -> None:
    ctl, schedule = run(
        [(0, "fire", "pangyo"), (0.05, "partition", ("pangyo", "ansan")), (0.1, "fire", "ansan")],
        fail="partition",
        seed=99,
    )
    with pytest.raises(ChaosError, match=r"dcfire.schedule \(seed 99\): partition pangyo"):
        schedule.wait(timeout=10)  # the runner ends at the failed step
    assert [(a, w) for a, w, _ in ctl.log] == [("apply", "fire pangyo"), ("lift", "fire pangyo")]
    assert "apply failed: the engine said no" in str(schedule.events[1])
    schedule.halt()  # reported once


def test_context_manager_keeps_the_block_exception() -> None:
    _, schedule = run([(0, "partition", ("pangyo", "ansan"))], fail="partition")
    with pytest.raises(KeyError), schedule:
        time.sleep(0.1)
        raise KeyError("the test's own failure")


# -- through the real FireController (fake steps) --------------------------------------------


class Instance:
    """A running instance as the controller sees it (no container: the steps are fakes)."""

    container = None
    adopted = False

    def __init__(self, spec: Service) -> None:
        self.spec, self.name, self.site = spec, spec.name, spec.site


class ControllerSystem:
    sites = ("a", "b")

    def __init__(self) -> None:
        services = (Service("x@a", "x", "a"), Service("x@b", "x", "b"))
        self.topology = Topology("topology.yml", (Site("a"), Site("b")), services)
        self.instances = [Instance(s) for s in services]
        self.healthy: list[list[str]] = []

    def in_site(self, site: str) -> list[Instance]:
        return [h for h in self.instances if h.site == site]

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def wait_healthy(self, handles: Sequence[Handle]) -> list[Any]:
        self.healthy.append([h.name for h in handles])
        return []


def make_step(effect: Effect, spec: FaultSpec, targets: Sequence[Handle]) -> FireStep:
    class Step:
        def __init__(self) -> None:
            self.effect = effect
            self.undone = False

        def apply(self) -> StepTiming:
            return StepTiming(effect, "fake", 1.0, {})

        def undo(self) -> None:
            pass

    return Step()


def test_controller_chaos_is_on_the_timeline_and_restore_halts_it() -> None:
    timeline = Timeline()
    dc = FireController(ControllerSystem(), make_step, timeline, 1.0)
    schedule = dc.chaos(faults=["fire", "freeze"], seed=7, duration=60, interval=0.05, quiet=0)
    eventually(lambda: len(schedule.events) >= 2, timeout=10)
    assert schedule.running
    dc.restore()  # what the fixture's teardown calls
    assert not schedule.running
    assert dc.burning == ()
    assert dc.evidence.seeds == [7]
    assert len(timeline) == len(schedule.events) >= 2
    assert [r.spec.mode for r in timeline] == [e.kind for e in schedule.events]
    assert all(e.lifted is not None for e in schedule.events)
    again = chaos.chaos(
        dc,
        chaos.targets_of(dc.system),
        faults=["fire", "freeze"],
        seed=7,
        duration=60,
        interval=0.05,
        quiet=0,
    )
    again.halt()
    assert again.steps == schedule.steps


def test_controller_chaos_uses_the_replay_seed() -> None:
    dc = FireController(ControllerSystem(), make_step, Timeline(), 1.0)
    from pytest_dcfire.chaos.seed import SEED_KEY

    config = type("C", (), {"stash": {SEED_KEY: 4242}})()
    dc._item = type("I", (), {"config": config, "nodeid": "t"})()
    schedule = dc.chaos(faults="fire", duration=1, quiet=0)
    schedule.halt()
    assert schedule.seed == 4242
    explicit = dc.chaos(faults="fire", duration=1, seed=5, quiet=0)
    explicit.halt()
    assert explicit.seed == 5


class FakeLinks:
    """Link faults as the controller records them, without a Toxiproxy."""

    def partition(
        self, spec: PartitionSpec, test: str = "", direct: FireStep | None = None
    ) -> LinkFault:
        return LinkFault("partition", spec.describe(), "cut", [], test)

    def brownout(self, spec: BrownoutSpec, handles: Sequence[Handle], test: str = "") -> LinkFault:
        return LinkFault("brownout", spec.target, spec.describe(), [], test)


def test_every_event_is_a_mark_in_the_workload_history() -> None:
    dc = FireController(ControllerSystem(), make_step, Timeline(), 1.0, links=FakeLinks())
    steps = [
        (0.0, "fire", "a", {"for": 0.1}),
        (0.15, "partition", ("a", "b"), {"for": 0.1}),
        (0.3, "brownout", "x@b", {"latency": 100, "for": 0.1}),
        (0.45, "freeze", "b", {"for": 0.1}),
    ]
    with dc.workload(lambda n: n, threads=1, interval=0.01) as wl:
        with dc.schedule(steps, quiet=0) as s:
            s.wait()
        time.sleep(0.05)
    dc.restore()
    dc.evidence.finish(None, None)
    marks = [(m.name, m.label) for m in wl.history.marks]
    assert marks == [
        ("ignite", "a [fire]"),
        ("burning", "a [fire]"),
        ("restore", "a [fire]"),
        ("partition", "a | b"),
        ("partition-lifted", "a | b"),
        ("brownout", "x@b"),
        ("brownout-lifted", "x@b"),
        ("ignite", "b [freeze]"),
        ("burning", "b [freeze]"),
        ("restore", "b [freeze]"),
    ], marks
    t0 = s.started
    assert t0 is not None
    by_name = {(m.name, m.label): m.time - t0 for m in wl.history.marks}
    for event in s.events:
        assert event.applied is not None and event.lifted is not None
        start = [v for (n, label), v in by_name.items() if n in ("ignite", event.kind)]
        assert any(abs(v - event.applied) < 0.05 for v in start), (str(event), by_name)
