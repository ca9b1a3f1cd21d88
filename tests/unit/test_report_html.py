"""The HTML report shows what the terminal shows: fires and link faults side by side, a test
with only link faults drawn with them, xfail reasons, container names whole."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pytest_dcfire.evidence import DrillEvidence, SessionEvidence
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.linkfaults import LinkFault
from pytest_dcfire.report.html import cut_svg, render
from pytest_dcfire.timeline import FireRecord

SVG = "{http://www.w3.org/2000/svg}"


def _brownout(test: str, started: float = 100.0) -> LinkFault:
    fault = LinkFault(
        "brownout", "ansan", "latency 300 ms", ["api@ansan:8080", "db:5432"], test=test
    )
    fault.started, fault.restored, fault.setup_ms = started, started + 2.5, 4.0
    fault.steps = [FaultTiming("links", "toxics", 4.0)]
    return fault


def _partition(test: str, started: float = 100.0) -> LinkFault:
    fault = LinkFault("partition", "pangyo|ansan", "", ["db:5432"], test=test)
    fault.started, fault.restored = started, started + 1.0
    return fault


def _session(*drills: DrillEvidence) -> SessionEvidence:
    evidence = SessionEvidence()
    for drill in drills:
        evidence.add(drill)
    return evidence


def _section(page: str, nodeid: str) -> str:
    start = page.index(f"<h3>{nodeid}")
    return page[start : page.index("</section>", start)]


def _svg(section: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", section, re.S).group(0))  # type: ignore[union-attr]


def test_link_faults_have_a_table_beside_the_fires() -> None:
    drill = DrillEvidence("t.py::test_slow_wan", outcome="passed")
    drill.link_faults += [_brownout(drill.nodeid), _partition(drill.nodeid, 103.0)]
    page = render(_session(drill), [])
    assert "2 link fault(s) in 1 test(s)" in page
    table = page.split("<h2>Link faults</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert "<th>link fault</th>" in rows[0] and "<th>via</th>" in rows[0]
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1])]
    assert cells == [
        "test_slow_wan",
        "brownout",
        "passed",
        "ansan",
        "latency 300 ms",
        "2",
        "links: toxics",
        "4",
        "2.50",
    ]
    assert "partition" in rows[2] and "pangyo|ansan" in rows[2]


def test_a_session_without_link_faults_has_no_link_fault_table() -> None:
    drill = DrillEvidence("t.py::test_nothing")
    assert "Link faults" not in render(_session(drill), [])


def test_a_test_with_only_link_faults_is_drawn_with_them() -> None:
    drill = DrillEvidence("t.py::test_brownout_only", outcome="passed")
    drill.link_faults.append(_brownout(drill.nodeid))
    section = _section(render(_session(drill), []), drill.nodeid)
    assert "0 fire(s)" not in section
    assert "1</b> link fault(s) (brownout ansan)" in section
    svg = _svg(section)
    texts = [el.text or "" for el in svg.iter(f"{SVG}text")]
    assert "link faults" in texts and "fires" not in texts
    assert "brownout ansan (latency 300 ms)" in texts
    assert "brownout" in texts and "lifted" in texts  # the start and the lift, marked
    # The legend names what is drawn (the brownout) and nothing that is not (no workload).
    assert "ok" not in texts and "RTO" not in texts and "lost write" not in texts
    band = [r for r in svg.iter(f"{SVG}rect") if "brownout" in (r.findtext(f"{SVG}title") or "")]
    assert band and float(band[0].get("width", "0")) > 100  # 2.5 s of a ~2.6 s axis


def test_a_fire_and_a_partition_in_one_test_get_a_row_each() -> None:
    drill = DrillEvidence("t.py::test_both", outcome="passed")
    record = FireRecord(FireSpec(("pangyo",)), drill.nodeid, ["db"], ignited=101.0)
    record.restored = 102.0
    drill.fires.append(record)
    drill.link_faults.append(_partition(drill.nodeid))
    section = _section(render(_session(drill), [record]), drill.nodeid)
    assert "<b>1</b> fire(s)" in section and "<b>1</b> link fault(s)" in section
    texts = [el.text or "" for el in _svg(section).iter(f"{SVG}text")]
    assert "fires" in texts and "link faults" in texts


def test_xfail_reasons_are_shown() -> None:
    reason = "login is down everywhere when pangyo burns: api@ansan needs auth"
    drill = DrillEvidence("t.py::test_login", outcome="xfailed", reason=reason)
    record = FireRecord(FireSpec(("pangyo",)), drill.nodeid, ["auth"], ignited=1.0)
    drill.fires.append(record)
    page = render(_session(drill), [record])
    section = _section(page, drill.nodeid)
    assert f"expected to fail: {reason}" in section
    fires = page.split("<h2>Fires</h2>", 1)[1].split("</table>", 1)[0]
    assert f'title="{reason}">xfailed</span>' in fires


def test_the_reason_is_kept_from_the_xfail_report() -> None:
    class Report:
        nodeid, when, skipped, passed, failed, outcome = "t.py::x", "call", True, False, False, ""
        wasxfail = "the async replica loses writes"

    evidence = _session(DrillEvidence("t.py::x"))
    evidence.outcome(Report())  # type: ignore[arg-type]
    assert evidence.drills["t.py::x"].outcome == "xfailed"
    assert evidence.drills["t.py::x"].reason == "the async replica loses writes"


def test_long_container_names_are_not_clipped() -> None:
    name = "testcontainers-postgres-3f9a1c2b7d@pangyo"
    record = FireRecord(FireSpec(("pangyo",)), "t.py::x", [name, "db"], cut_ms=3.0)
    record.steps = [StepTiming("network", "nftables", 3.0, {name: 1.0, "db": 2.0})]
    svg = ET.fromstring(cut_svg(record))
    label = next(el for el in svg.iter(f"{SVG}text") if el.text == name)
    # Anchored at its end: the text starts about 6.5 px a character to the left of x.
    assert float(label.get("x", "0")) - 6.5 * len(name) >= 0
    assert float(svg.get("width", "0")) >= float(label.get("x", "0")) + 500


def test_a_failed_check_with_nothing_lost_is_in_the_headline() -> None:
    """Phantoms fail `lost_writes` with 0 writes lost: the headline must not read as an
    all-clear."""
    from pytest_dcfire.evidence import Verdict

    drill = DrillEvidence("t.py::test_phantoms", outcome="failed")
    drill.add_verdict(Verdict("lost writes", False, "0 acknowledged writes lost, 3 phantoms"))
    headline = render(_session(drill), []).split('<p class="meta">', 1)[1].split("</p>", 1)[0]
    assert '<span class="lost">1 check(s) failed</span>' in headline
    passing = DrillEvidence("t.py::test_fine", outcome="passed")
    passing.add_verdict(Verdict("lost writes", True, "0 acknowledged writes lost"))
    assert "failed" not in render(_session(passing), []).split('<p class="meta">', 1)[1][:300]
