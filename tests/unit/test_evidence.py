"""What a test's `dcfire` keeps for the report: workloads marked with the test's fires, the
RTO / RPO / lost writes put on the right fire, verdicts from any checker (pure logic: the
fire controller runs on recording fake steps, as in test_fire_controller.py)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pytest

from pytest_dcfire.evidence import SessionEvidence, Verdict, to_verdict
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.fire import FireController
from pytest_dcfire.history import Fail, History, Op
from pytest_dcfire.modes import Effect
from pytest_dcfire.report.html import render
from pytest_dcfire.seams import Handle
from pytest_dcfire.timeline import Timeline
from pytest_dcfire.topology.model import Service, Topology


class FakeHandle:
    container = None
    adopted = False

    def __init__(self, name: str, site: str) -> None:
        self.name, self.site = name, site
        self.spec = Service(name, name.split("@")[0], site)


class FakeSystem:
    sites = ("a", "b")
    services: dict[str, FakeHandle] = {}
    topology: Topology  # not read by these tests

    def in_site(self, site: str) -> list[FakeHandle]:
        return [FakeHandle(f"x@{site}", site), FakeHandle(f"y@{site}", site)]

    def __iter__(self) -> Iterator[FakeHandle]:
        return iter([h for site in self.sites for h in self.in_site(site)])

    def wait_healthy(self, handles: Sequence[Handle]) -> list[Any]:
        return []


class Step:
    def __init__(self, effect: Effect, names: list[str]) -> None:
        self.effect, self.names = effect, names

    def apply(self) -> StepTiming:
        return StepTiming(
            self.effect, "fake", 3.0, {n: 1.0 + 2 * i for i, n in enumerate(self.names)}
        )

    def undo(self) -> None:
        pass


class Item:
    nodeid = "test_mod.py::test_drill"

    def __init__(self) -> None:
        self.user_properties: list[tuple[str, object]] = []


class Hook:
    def __init__(self, answer: object = None) -> None:
        self.answer = answer
        self.calls: list[tuple[object, object]] = []

    def pytest_dcfire_check(self, item: object, history: object, fires: object) -> list[object]:
        self.calls.append((history, fires))
        return [self.answer] if self.answer is not None else []

    def __getattr__(self, name: str) -> Any:  # the before/after ignite/restore hooks
        return lambda **kw: None


def controller(item: Item | None = None, hook: Hook | None = None) -> FireController:
    return FireController(
        FakeSystem(),
        lambda effect, spec, targets: Step(effect, [t.name for t in targets]),
        Timeline(),
        recovery_timeout=5,
        hooks=hook or Hook(),  # type: ignore[arg-type]  # a fake pluggy.HookRelay
        item=item or Item(),  # type: ignore[arg-type]  # a fake pytest.Item
    )


def test_fires_mark_the_running_workloads_ignite_and_restore() -> None:
    dc = controller()
    with dc.workload(lambda n: n, threads=1, interval=0.001) as wl:
        time.sleep(0.02)
        fire = dc.fire("a")
        time.sleep(0.02)
        fire.extinguish()
        time.sleep(0.02)
    ignites, restores = wl.history.marks_named("ignite"), wl.history.marks_named("restore")
    assert [m.time for m in ignites] == [fire.record.ignited]
    assert [m.time for m in restores] == [fire.record.restored]
    assert ignites[0].label == "a [fire]"
    assert wl.history.ops[0].invoke < ignites[0].time < wl.history.ops[-1].invoke
    assert dc.evidence.fires == [fire.record]


def test_a_fire_burning_before_the_workload_starts_is_marked_too() -> None:
    dc = controller()
    fire = dc.fire("b", mode="partition")  # as a marker's fire: before the body
    with dc.workload(lambda n: n, threads=1, interval=0.001) as wl:
        time.sleep(0.01)
    after = dc.workload(lambda n: n, threads=1, interval=0.001)
    dc.restore()
    with after:
        time.sleep(0.01)
    assert [m.time for m in wl.history.marks_named("ignite")] == [fire.record.ignited]
    assert wl.history.marks_named("restore") == ()  # stopped before the restore
    assert after.history.marks_named("ignite") == ()  # started after the restore
    assert [w.name for w in dc.evidence.workloads] == ["<lambda>", "<lambda>#2"]


def test_rto_rpo_and_lost_writes_land_on_the_fire_they_measure_and_in_junit() -> None:
    item = Item()
    hook = Hook(("custom", False, "conftest says no"))
    dc = controller(item, hook)
    first = dc.fire("b", mode="partition")
    first.extinguish()

    def write(n: int) -> int:
        if dc.burning:
            raise Fail("dark")
        return n

    with dc.workload(write, threads=2, interval=0.002) as wl:
        time.sleep(0.03)
        second = dc.fire("a")
        time.sleep(0.03)
        second.extinguish()
        time.sleep(0.03)
    acknowledged = [op.value for op in wl.history.ops if op.type == "ok"]
    lost = wl.lost_writes(acknowledged[:-2])  # the final read misses the last two writes
    assert len(lost.lost) == 2
    dc.restore()
    dc.evidence.finish(hook, item)  # type: ignore[arg-type]  # fakes of pytest's

    assert first.record.rto_s is None and first.record.lost_writes is None
    assert second.record.lost_writes == 2
    assert second.record.rpo_s == pytest.approx(lost.rpo)
    av = wl.record.availability
    assert av is not None and av.rto is not None and av.rto > 0.02
    assert second.record.rto_s == pytest.approx(av.rto)
    props = dict(item.user_properties)
    assert props == {
        "dcfire_rto_s": round(av.rto, 3),
        "dcfire_skew_ms": 2.0,  # x and y, 2 ms apart
        "dcfire_lost_writes": 2,
    }
    names = [(v.name, v.ok) for v in dc.evidence.verdicts]
    assert ("lost writes", False) in names and ("custom", False) in names
    assert ("availability", None) in names
    assert hook.calls and hook.calls[0][0] is wl.history


def test_a_test_without_workload_still_calls_the_checkers_once_and_gets_skew_only() -> None:
    item, hook = Item(), Hook(Verdict("fires seen", True, "ok"))
    dc = controller(item, hook)
    dc.fire("a").extinguish()
    dc.evidence.finish(hook, item)  # type: ignore[arg-type]  # fakes of pytest's
    assert [h for h, _ in hook.calls] == [None]
    assert dict(item.user_properties) == {"dcfire_skew_ms": 2.0}


def test_to_verdict_takes_checker_results_tuples_and_refuses_the_rest() -> None:
    history = History([Op("write", 1, "ok", 0.0, 0.1, id=1), Op("write", 2, "ok", 0.2, 0.3, id=2)])
    lost = to_verdict(history.lost_writes([1]))
    assert lost is not None and lost.ok is False and "1 acknowledged writes lost" in lost.summary
    assert "LOST" in lost.detail
    lin = to_verdict(history.linearizable("register", initial=None))
    assert lin is not None and lin.name == "linearizable"
    skew = History(
        [
            Op(
                "txn",
                (("r", "x", None), ("append", "y", 1)),
                "ok",
                0,
                1,
                result=(("r", "x", ()), ("append", "y", 1)),
                id=1,
            ),
            Op(
                "txn",
                (("r", "y", None), ("append", "x", 1)),
                "ok",
                0,
                1,
                result=(("r", "y", ()), ("append", "x", 1)),
                id=2,
            ),
        ]
    )
    iso = to_verdict(skew.isolation("serializable"))
    assert iso is not None and iso.name == "isolation" and iso.ok is False
    assert "G2-item" in iso.summary and "T1 read key 'x' = []" in iso.detail
    counter = to_verdict(History([Op("read", None, "ok", 0, 1, result=0)]).counter())
    assert counter is not None and counter.name == "counter" and counter.ok is True
    assert to_verdict(("mine", True, "fine")) == Verdict("mine", True, "fine")
    assert to_verdict(None) is None
    assert to_verdict("3 reads were slow").ok is None  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="a dcfire verdict must be"):
        to_verdict(3.5)


def test_the_report_of_a_long_history_stays_small() -> None:
    """Consecutive calls of one outcome that touch on screen are drawn as one segment."""
    dc = controller()
    fire = dc.fire("a")
    wl = dc.workload(lambda n: n)
    t = fire.record.ignited - 5.0
    for n in range(100_000):
        kind: Literal["fail", "ok"] = "fail" if 40_000 <= n < 50_000 else "ok"
        wl.history.append(
            Op("write", n, kind, t + n * 1e-4, t + n * 1e-4 + 5e-5, process=n % 4, id=n)
        )
    wl.record.history = wl.history
    dc.evidence.workloads.append(wl.record)
    fire.extinguish()
    dc.evidence.finish(None, None)
    evidence = SessionEvidence()
    evidence.add(dc.evidence)
    page = render(evidence, [fire.record])
    assert len(page) < 200_000
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    root = ET.fromstring("<svg" + svg + "</svg>")
    colors = {el.get("stroke") for el in root.iter("{http://www.w3.org/2000/svg}line")}
    assert "#e03131" in colors and "#2f9e44" in colors  # fail and ok segments


def test_link_faults_are_marked_and_drawn() -> None:
    from pytest_dcfire.linkfaults import LinkFault

    dc = controller()
    with dc.workload(lambda n: n, threads=1, interval=0.001) as wl:
        time.sleep(0.01)
        fault = LinkFault("brownout", "a", "latency 200 ms", ["p"])
        dc.evidence.link_fault(fault)  # what the controller does when it applies one
        time.sleep(0.01)
        fault.lift()  # by the test, not by restore()
        time.sleep(0.01)
    dc.evidence.finish(None, None)
    assert [m.time for m in wl.history.marks_named("brownout")] == [fault.started]
    assert [m.time for m in wl.history.marks_named("brownout-lifted")] == [fault.restored]
    evidence = SessionEvidence()
    evidence.add(dc.evidence)
    page = render(evidence, [])
    assert "brownout a (latency 200 ms)" in page
