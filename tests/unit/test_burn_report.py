"""What a session burn adds to reports, as pure logic (fakes, no Docker): the failing
test's section, the HTML list of the tests under the burn, and the held containers a
worker never cuts nor waits for."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dcfire.burn import SuiteBurn
from pytest_dcfire.evidence import SessionEvidence
from pytest_dcfire.modes import Effect
from pytest_dcfire.report.failure import dark_section, under_burn
from pytest_dcfire.report.html import page, parts


def _report(nodeid: str, when: str, outcome: str) -> Any:
    return SimpleNamespace(
        nodeid=nodeid,
        when=when,
        outcome=outcome,
        passed=outcome == "passed",
        failed=outcome == "failed",
        skipped=outcome == "skipped",
    )


def _burn_held_elsewhere() -> SuiteBurn:
    burn = SuiteBurn(("east",), "power-loss")
    burn.held = frozenset({"c1"})
    burn.since = time.time() - 12.0
    burn.members = ["api (adopted)", "cache (adopted)"]
    return burn


def test_section_names_sites_mode_since_and_containers() -> None:
    item = SimpleNamespace(funcargs={})
    text = dark_section(_burn_held_elsewhere(), item)  # type: ignore[arg-type]
    first = text.splitlines()[0]
    assert first.startswith(
        "east dark for the whole session (--dcfire-burn, mode power-loss) since "
    )
    assert "(12." in first or "(13." in first
    assert first.endswith("containers: api (adopted), cache (adopted)")
    assert "blackholes its ports" in text


def test_no_section_without_anything_dark() -> None:
    item = SimpleNamespace(funcargs={})
    assert dark_section(SuiteBurn(()), item) == ""  # type: ignore[arg-type]
    assert dark_section(SuiteBurn(("east",)), item) == ""  # type: ignore[arg-type]  # not lit


def test_section_names_the_tests_own_fires() -> None:
    from pytest_dcfire.fire import Fire
    from pytest_dcfire.firespec import FireSpec
    from pytest_dcfire.timeline import FireRecord

    spec = FireSpec(("west",))
    record = FireRecord(spec, "t", ["echo@west"], ignited_wall=time.time() - 1.0)
    record.steps.append(SimpleNamespace())  # type: ignore[arg-type]
    fire = Fire(SimpleNamespace(), spec, record)  # type: ignore[arg-type]
    fire._applied.append(SimpleNamespace())
    item = SimpleNamespace(funcargs={"dcfire": SimpleNamespace(fires=[fire])})
    [line, _] = dark_section(SuiteBurn(()), item).splitlines()  # type: ignore[arg-type]
    assert line.startswith("west [fire] ignited by this test at ")
    assert line.endswith("still dark; containers: echo@west")


def test_html_lists_every_test_under_the_burn_from_every_process() -> None:
    burn = _burn_held_elsewhere()
    shares = []
    for nodeid, outcome in (("t.py::a", "passed"), ("t.py::b", "failed")):
        evidence = SessionEvidence()
        evidence.burn_label = burn.spec.describe()
        under_burn(evidence, burn, _report(nodeid, "setup", "passed"))
        under_burn(evidence, burn, _report(nodeid, "call", outcome))
        under_burn(evidence, burn, _report(nodeid, "teardown", "passed"))
        shares.append(parts(evidence, []))
    html = page(shares)
    assert "Tests under the session burn: east [power-loss]" in html
    assert "1 failed, 1 passed" in html
    assert html.index("t.py::a") < html.index("t.py::b")


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([("setup", "failed")], "error"),
        ([("setup", "skipped")], "skipped"),
        ([("setup", "passed"), ("call", "passed"), ("teardown", "failed")], "error"),
        ([("setup", "passed"), ("call", "failed"), ("teardown", "failed")], "failed"),
    ],
)
def test_outcome_of_a_test_under_the_burn(phases: list[tuple[str, str]], expected: str) -> None:
    evidence = SessionEvidence()
    for when, outcome in phases:
        under_burn(evidence, _burn_held_elsewhere(), _report("t.py::x", when, outcome))
    assert evidence.under_burn == {"t.py::x": expected}


def test_a_worker_holds_what_the_controller_burns_and_never_waits_for_it() -> None:
    from pytest_dcfire.faults.timing import FaultTiming
    from pytest_dcfire.fire import FireController
    from pytest_dcfire.timeline import Timeline

    handles = [
        SimpleNamespace(name=n, site="east", container=SimpleNamespace(id=n), adopted=n == "c1")
        for n in ("c1", "own")
    ]
    held: list[tuple[str, str]] = []
    waited: list[list[str]] = []
    system = SimpleNamespace(
        sites=("east", "west"),
        in_site=lambda site: [h for h in handles if h.site == site],
        wait_healthy=lambda hs: waited.append([h.name for h in hs]),
    )
    applied: list[list[str]] = []

    def make_step(effect: Effect, spec: Any, targets: Any) -> Any:
        from pytest_dcfire.steps import CallStep

        def do() -> FaultTiming:
            applied.append([f"{effect}:{h.name}" for h in targets])
            return FaultTiming(effect, "fake", 0.0)

        return CallStep(effect, do, lambda: None)

    state = SimpleNamespace(
        faults=SimpleNamespace(hold=lambda effect, cid: held.append((effect, cid))),
        make_step=make_step,
        timeline=Timeline(),
        settings=SimpleNamespace(recovery_timeout=5.0),
        links=None,
        progress=lambda line: None,
    )
    burn = SuiteBurn(("east",), "freeze")
    burn.held = frozenset({"c1"})
    burn.ignite(system, state)
    assert held == [("pause", "c1")]  # counted as dark; the step itself counts per container
    assert burn.burning() == ("east",)
    assert burn.members == ["own"]
    burn.restore()
    assert waited == [["own"]]  # never the controller's container
    controller = FireController(system, make_step, Timeline(), 5.0)
    controller.dark_elsewhere = burn.held_ids
    with controller.fire("east"):
        pass
    assert waited[-1] == ["own"]
