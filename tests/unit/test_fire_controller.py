"""The fire controller's ordering and bookkeeping, with recording fake steps (pure logic).

Real cuts are tested against a real engine in tests/docker; here only the order in which
steps are applied and undone, and what the timeline records, are at stake.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError, FireError
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.fire import FireController
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.modes import Effect
from pytest_dcfire.seams import FaultSpec, Handle
from pytest_dcfire.steps import Step
from pytest_dcfire.timeline import Timeline
from pytest_dcfire.topology.model import Service, Topology


class FakeHandle:
    container = None
    adopted = False

    def __init__(self, name: str, site: str) -> None:
        self.name, self.site = name, site
        self.spec = Service(name, name.split("@")[0], site)


class FakeSystem:
    sites = ("a", "b", "c")
    topology: Topology  # not read by these tests

    def __init__(self) -> None:
        self.handles = [FakeHandle("x@a", "a"), FakeHandle("y@a", "a"), FakeHandle("x@b", "b")]
        self.health_checked: list[list[str]] = []

    def in_site(self, site: str) -> list[FakeHandle]:
        return [h for h in self.handles if h.site == site]

    def __iter__(self) -> Iterator[FakeHandle]:
        return iter(self.handles)

    def wait_healthy(self, handles: Sequence[Handle]) -> list[Any]:
        self.health_checked.append([h.name for h in handles])
        return []


class Recorder:
    def __init__(self, fail_apply: str | None = None, fail_undo: str | None = None) -> None:
        self.log: list[str] = []
        self.fail_apply, self.fail_undo = fail_apply, fail_undo

    def __call__(self, effect: Effect, spec: FaultSpec, targets: Sequence[Handle]) -> Step:
        recorder = self
        names = [t.name for t in targets]

        class Step:
            def __init__(self) -> None:
                self.effect = effect

            def apply(self) -> StepTiming:
                recorder.log.append(f"apply {effect} {','.join(names)}")
                if recorder.fail_apply == effect:
                    raise KeyboardInterrupt
                return StepTiming(effect, "fake", 1.0, {n: float(i) for i, n in enumerate(names)})

            def undo(self) -> None:
                recorder.log.append(f"undo {effect} {','.join(names)}")
                if recorder.fail_undo == effect:
                    raise RuntimeError("engine said no")

        return Step()


def controller(recorder: Recorder, system: FakeSystem | None = None) -> FireController:
    return FireController(system or FakeSystem(), recorder, Timeline(), recovery_timeout=5)


@pytest.mark.parametrize(
    ("mode", "network", "storage", "effects"),
    [
        ("fire", True, True, ("network", "links", "storage")),
        ("fire", True, False, ("network", "links")),
        ("fire", False, True, ("storage",)),
        ("power-loss", True, True, ("network", "links", "kill", "storage")),
        ("power-loss", False, False, ("kill",)),
        ("crash", True, True, ("network", "links", "kill", "storage")),
        ("crash", False, True, ("kill", "storage")),
        ("partition", True, True, ("network", "links")),
        ("freeze", True, True, ("pause",)),
    ],
)
def test_modes_map_to_effects(
    mode: str, network: bool, storage: bool, effects: tuple[str, ...]
) -> None:
    spec = FireSpec.parse(["a"], {"mode": mode, "network": network, "storage": storage}, "ab")
    assert spec.effects() == effects


def test_fire_applies_in_order_and_restores_in_reverse_then_health_checks() -> None:
    rec, system = Recorder(), FakeSystem()
    dc = controller(rec, system)
    fire = dc.fire("a")
    assert fire.burning and dc.burning == ("a",)
    assert rec.log == [
        "apply network x@a,y@a",
        "apply links x@a,y@a",
        "apply storage x@a,y@a",
    ]
    assert fire.record.skew_ms == 1.0 and fire.record.targets == ["x@a", "y@a"]
    fire.extinguish()
    assert rec.log[3:] == [
        "undo storage x@a,y@a",
        "undo links x@a,y@a",
        "undo network x@a,y@a",
    ]
    assert system.health_checked == [["x@a", "y@a"]]
    assert not fire.burning and dc.burning == ()
    fire.extinguish()  # idempotent
    assert len(rec.log) == 6


def test_context_manager_restores_on_exception() -> None:
    rec = Recorder()
    dc = controller(rec)
    with pytest.raises(ZeroDivisionError), dc.fire("b", mode="partition"):
        1 / 0  # noqa: B018
    assert rec.log == [
        "apply network x@b",
        "apply links x@b",
        "undo links x@b",
        "undo network x@b",
    ]


def test_restore_undoes_every_fire_most_recent_first() -> None:
    rec = Recorder()
    dc = controller(rec)
    dc.fire("a", mode="freeze")
    dc.fire("b", mode="partition")
    dc.restore()
    assert rec.log == [
        "apply pause x@a,y@a",
        "apply network x@b",
        "apply links x@b",
        "undo links x@b",
        "undo network x@b",
        "undo pause x@a,y@a",
    ]


def test_an_interrupt_while_applying_undoes_what_was_started() -> None:
    rec = Recorder(fail_apply="storage")
    dc = controller(rec)
    with pytest.raises(KeyboardInterrupt):
        dc.fire("a")
    # The storage step was recorded before it was applied, so it is undone too.
    assert rec.log == [
        "apply network x@a,y@a",
        "apply links x@a,y@a",
        "apply storage x@a,y@a",
        "undo storage x@a,y@a",
        "undo links x@a,y@a",
        "undo network x@a,y@a",
    ]
    assert dc.burning == ()


def test_a_failing_undo_still_undoes_the_rest_and_says_what_failed() -> None:
    rec = Recorder(fail_undo="storage")
    dc = controller(rec)
    dc.fire("a")
    with pytest.raises(
        FireError, match=r"restoring a \[fire\] failed: undo storage: engine said no"
    ):
        dc.restore()
    assert rec.log[-1] == "undo network x@a,y@a"


def test_markers_of_one_mode_burn_as_one_fire() -> None:
    rec = Recorder()
    dc = controller(rec)
    fires = dc.ignite_together(
        [FireSpec(("a",)), FireSpec(("b",)), FireSpec(("a",), mode="freeze")]
    )
    assert [f.sites for f in fires] == [("a", "b"), ("a",)]
    assert rec.log[0] == "apply network x@a,y@a,x@b"


def test_health_wait_skips_sites_that_still_burn() -> None:
    rec, system = Recorder(), FakeSystem()
    dc = controller(rec, system)
    outer = dc.fire("a", mode="partition")
    inner = dc.fire("a", "b", mode="freeze")
    inner.extinguish()
    assert system.health_checked == [["x@b"]]  # site a still burns through `outer`
    outer.extinguish()
    assert system.health_checked[-1] == ["x@a", "y@a"]


def test_fire_call_validates_like_the_marker() -> None:
    dc = controller(Recorder())
    with pytest.raises(ConfigError, match=r"dcfire.fire: unknown site 'z'; valid sites: a, b, c"):
        dc.fire("z")
    with pytest.raises(ConfigError, match="unknown mode 'melt'"):
        dc.fire("a", mode="melt")  # type: ignore[arg-type]  # refused by mypy and at run time


def test_timeline_records_rto_of_the_last_fire() -> None:
    dc = controller(Recorder())
    dc.fire("a")
    recovery = dc.measure_recovery(lambda: True, stable=1)
    assert dc.fires[-1].record.rto_s == recovery.rto
    assert recovery.rto < 1


def test_table_report_and_junit_show_the_rto_measure_recovery_returned() -> None:
    """One RTO everywhere: the probe that blocks then answers is timed to its answer, and
    the fire table, the HTML row and `dcfire_rto_s` all carry that number."""
    import time
    from types import SimpleNamespace

    from pytest_dcfire.report.html import _fire_row
    from pytest_dcfire.report.terminal import fire_table

    dc = controller(Recorder())
    dc.fire("a")
    calls = {"n": 0}

    def probe() -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.4)
        return True

    recovery = dc.measure_recovery(probe, stable=2)
    assert recovery.rto >= 0.4
    record = dc.fires[-1].record
    assert record.rto_s == recovery.rto
    item = SimpleNamespace(user_properties=[])
    dc.evidence.finish(None, item)  # type: ignore[arg-type]  # a fake pytest.Item
    assert ("dcfire_rto_s", round(recovery.rto, 3)) in item.user_properties
    assert f"{recovery.rto:.2f}" in fire_table([record])[1].split()
    assert f"<td class=num>{recovery.rto:.2f}</td>" in _fire_row(record, {}, {})
