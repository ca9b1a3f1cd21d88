"""Every site drilled, the plan of drills: Drills, JUnit properties, the checker hook and the report,
through pytest itself (pytester).

The system under test is a stand-in here (a conftest overrides `dcfire_topology` and the
session's step factory with recording fakes), so that the plugin's wiring is checked in a
second; real cuts of real containers are in tests/docker/test_replication.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

FAKE_CONFTEST = """
import pytest

from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.plugin import SESSION_KEY


class Handle:
    def __init__(self, name, site):
        self.name, self.site = name, site


class FakeSystem:
    sites = ("pangyo", "ansan")
    services = {}

    def __init__(self):
        self.handles = [Handle("db@pangyo", "pangyo"), Handle("api@pangyo", "pangyo"),
                        Handle("db@ansan", "ansan")]

    def in_site(self, site):
        return [h for h in self.handles if h.site == site]

    def wait_healthy(self, handles):
        return []


class Step:
    def __init__(self, effect, names):
        self.effect, self.names = effect, names

    def apply(self):
        return StepTiming(self.effect, "fake", 2.0, {n: 1.0 + i for i, n in enumerate(self.names)})

    def undo(self):
        pass


@pytest.fixture(scope="session")
def dcfire_topology(pytestconfig):
    state = pytestconfig.stash[SESSION_KEY]
    state.make_step = lambda effect, spec, targets: Step(effect, [t.name for t in targets])
    return FakeSystem()
"""

TOPOLOGY = """
sites: [pangyo, ansan]
services:
  db:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
  api:
    site: pangyo
    image: debian:bookworm-slim
"""

#: A workload whose odd writes fail while a site burns; when pangyo burned, the final read
#: misses 2, 4 and 6 (acknowledged while burning): three lost writes.
WORKLOAD_TEST = """
import time

import pytest

from pytest_dcfire import dc_fire
from pytest_dcfire.history import Fail

@dc_fire(each_site=True)
def test_drill(dcfire):
    site = dcfire.burning[0]
    seen = []

    def write(n):
        if dcfire.burning and n % 2:
            raise Fail("site burning")
        seen.append(n)

    with dcfire.workload(write, threads=2, interval=0.002) as wl:
        time.sleep(0.05)
        dcfire.restore()
        time.sleep(0.05)
    lost = wl.lost_writes([v for v in seen if site == "ansan" or v not in (2, 4, 6)])
    assert wl.history.marks_named("ignite") and wl.history.marks_named("restore")
    assert lost.ok is (site == "ansan")
"""


@pytest.fixture
def fake_run(pytester: pytest.Pytester, write_topology: Callable[..., Path]) -> pytest.Pytester:
    write_topology(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makeconftest(FAKE_CONFTEST)
    return pytester


def test_each_site_runs_once_per_site_with_ids_naming_the_site(fake_run: pytest.Pytester) -> None:
    fake_run.makepyfile(
        """
        import pytest
        from pytest_dcfire import dc_fire

        @dc_fire(each_site=True)
        def test_x(dcfire):
            print("BURNING", dcfire.burning)

        @dc_fire(each_site=True, mode="partition")
        @pytest.mark.parametrize("mode", ["sync", "async"])
        def test_y(dcfire, mode):
            assert len(dcfire.burning) == 1
        """
    )
    result = fake_run.runpytest("-v", "-rP")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_x[[]fire-pangyo[]] PASSED*",
            "*::test_x[[]fire-ansan[]] PASSED*",
            "*::test_y[[]partition-pangyo-sync[]] PASSED*",
            "*::test_y[[]partition-ansan-async[]] PASSED*",
        ]
    )
    out = result.stdout.str()
    assert "BURNING ('pangyo',)" in out and "BURNING ('ansan',)" in out


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "dc_fire('pangyo', each_site=True)",
            "*@dc_fire('pangyo', each_site=True): each_site=True burns every site in turn "
            "(pangyo, ansan); it cannot also name sites ('pangyo'): drop each_site=True or "
            "the site names",
        ),
        ("dc_fire(each_site='yes')", "*each_site='yes' must be True or False"),
        ("dc_fire(each_site=True, mode='fir')", "*unknown mode 'fir' (did you mean 'fire'?)*"),
    ],
)
def test_bad_each_site_markers_are_one_usage_error(
    fake_run: pytest.Pytester, marker: str, expected: str
) -> None:
    fake_run.makepyfile(
        f"from pytest_dcfire import dc_fire\n\n@{marker}\ndef test_x():\n    pass\n"
    )
    result = fake_run.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid dc_fire marker(s):", expected])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_each_site_without_a_topology_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "from pytest_dcfire import dc_fire\n\n@dc_fire(each_site=True)\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*each_site=True needs a topology to know the sites*"])


def test_plan_lists_every_drill_and_the_sites_nobody_burns(fake_run: pytest.Pytester) -> None:
    fake_run.makepyfile(
        """
        from pytest_dcfire import dc_fire

        @dc_fire(each_site=True)
        def test_every_site(dcfire):
            raise AssertionError("a plan runs nothing")

        @dc_fire("pangyo", mode="partition")
        def test_pangyo_only(dcfire):
            raise AssertionError("a plan runs nothing")

        def test_no_fire():
            raise AssertionError("a plan runs nothing")
        """
    )
    result = fake_run.runpytest("--dcfire-plan")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "if pangyo burns:",
            "*",
            "drills: 3 test(s) burn a site with a dc_fire marker",
            "  *::test_every_site[[]fire-pangyo[]]  burns pangyo [[]fire[]]",
            "  *::test_every_site[[]fire-ansan[]]   burns ansan [[]fire[]]",
            "  *::test_pangyo_only              burns pangyo [[]partition[]]",
            "sites no marker burns: none",
        ]
    )
    assert "a plan runs nothing" not in result.stdout.str()
    assert "test_no_fire" not in result.stdout.str()

    fake_run.makepyfile(
        "from pytest_dcfire import dc_fire\n\n@dc_fire('pangyo')\ndef test_one(dcfire):\n    pass\n"
    )
    result = fake_run.runpytest(
        "--dcfire-plan", "test_plan_lists_every_drill_and_the_sites_nobody_burns.py"
    )
    result.stdout.fnmatch_lines(
        ["sites no marker burns: ansan (add @dc_fire(each_site=True) to a test)"]
    )


def test_junit_xml_gets_rto_skew_and_lost_writes(fake_run: pytest.Pytester) -> None:
    fake_run.makepyfile(WORKLOAD_TEST)
    junit = fake_run.path / "junit.xml"
    result = fake_run.runpytest(f"--junitxml={junit}")
    result.assert_outcomes(passed=2)
    cases = {
        case.get("name"): {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    pangyo, ansan = cases["test_drill[fire-pangyo]"], cases["test_drill[fire-ansan]"]
    assert pangyo["dcfire_lost_writes"] == "3"
    assert ansan["dcfire_lost_writes"] == "0"
    assert float(pangyo["dcfire_skew_ms"]) == pytest.approx(1.0)  # two targets, 1 ms apart
    assert float(ansan["dcfire_skew_ms"]) == 0.0  # one target
    for props in (pangyo, ansan):
        assert float(props["dcfire_rto_s"]) >= 0.0


def test_a_conftest_checker_adds_its_verdict_to_the_report(fake_run: pytest.Pytester) -> None:
    fake_run.makeconftest(
        FAKE_CONFTEST
        + """

from pytest_dcfire.evidence import Verdict

CALLS = []

def pytest_dcfire_check(item, history, fires):
    CALLS.append(item.nodeid)
    writes = sum(1 for op in history.ops if op.type == "ok")
    return [
        Verdict("enough writes", writes >= 5, f"{writes} writes acknowledged"),
        ("fires counted", True, f"{len(fires)} fire(s) of {fires[0].spec.describe()}"),
    ]

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"CHECKED {sorted(CALLS)}")
"""
    )
    fake_run.makepyfile(WORKLOAD_TEST)
    result = fake_run.runpytest("--dcfire-report=out/report.html")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "CHECKED [[]'*test_drill[[]fire-ansan[]]', '*test_drill[[]fire-pangyo[]]'[]]",
            "dcfire: report written to *out/report.html",
        ]
    )
    page = (fake_run.path / "out" / "report.html").read_text()
    assert "enough writes" in page and "fires counted" in page
    assert "1 fire(s) of pangyo [fire]" in page


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.remote: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and "://" in value:
                self.remote.append(value)


def test_the_report_is_one_self_contained_page_with_fires_rto_and_lost_writes(
    fake_run: pytest.Pytester,
) -> None:
    fake_run.makepyfile(WORKLOAD_TEST)
    fake_run.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_report = r/dcfire.html\n")
    result = fake_run.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*dcfire: fires*", "test *fire*rpo s*lost*", "*report written to*"]
    )
    page = (fake_run.path / "r" / "dcfire.html").read_text()
    parser = _Collect()
    parser.feed(page)
    assert parser.tags.count("svg") >= 4  # a timeline and a cut chart per test
    assert parser.remote == [] and "<script" not in page
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed XML
    assert "pangyo [fire]" in page and "ansan [fire]" in page
    assert "RTO " in page
    assert "3 acknowledged writes lost" in page
    assert "lost writes (3" in page  # the lane of crosses on the timeline


def test_a_bad_report_path_is_a_usage_error(fake_run: pytest.Pytester) -> None:
    (fake_run.path / "adir").mkdir()
    result = fake_run.runpytest("--dcfire-report=adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dcfire-report = 'adir': *adir is a directory*"])


def test_under_xdist_the_workers_reports_make_one_file(fake_run: pytest.Pytester) -> None:
    fake_run.makepyfile(WORKLOAD_TEST)
    result = fake_run.runpytest_subprocess("-n", "2", "--dcfire-report=x.html")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["dcfire: report written to *x.html"])
    page = (fake_run.path / "x.html").read_text()
    assert "test_drill[fire-pangyo]" in page and "test_drill[fire-ansan]" in page
    assert page.count('<section class="test"') == 2
    assert 'id="test-gw0-0"' in page and 'id="test-gw1-0"' in page  # one from each worker
    assert "2 fire(s) in 2 test(s)" in page
    assert list(fake_run.path.glob("x*.html")) == [fake_run.path / "x.html"]
