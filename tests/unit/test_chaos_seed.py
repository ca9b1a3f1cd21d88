"""`--dcfire-seed` / `dcfire_seed` through pytest: validation, the seed printed with the test's
report and its failure, and replay (the same seed, the same events).

The inner sessions replace the `dcfire` fixture with the real FireController over fake steps
(no engine): what is at stake here is the plumbing from the option to `dcfire.chaos()` and
back into pytest's report. tests/docker/test_chaos_schedules.py does the same against real containers.
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

CONFTEST = """
import json, os
import pytest
from pytest_dcfire.evidence import session_evidence
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.fire import FireController
from pytest_dcfire.timeline import Timeline


class Svc:
    def __init__(self, name, base, site):
        self.name, self.base, self.site = name, base, site


class Topo:
    services = (Svc("api@pangyo", "api", "pangyo"), Svc("api@ansan", "api", "ansan"))


class System:
    sites = ("pangyo", "ansan")
    topology = Topo()

    def in_site(self, site):
        return [s for s in self.topology.services if s.site == site]

    def wait_healthy(self, handles):
        return []


class Step:
    def __init__(self, effect):
        self.effect = effect

    def apply(self):
        return FaultTiming(self.effect, "fake", 0.0, {})

    def undo(self):
        pass


@pytest.fixture
def dcfire(request):
    ctl = FireController(System(), lambda e, s, t: Step(e), Timeline(), 1.0, item=request.node)
    session_evidence(request.config).add(ctl.evidence)
    yield ctl
    ctl.restore()


@pytest.fixture
def record(request):
    def write(schedule):
        out = [[e.kind, list(e.targets), e.due] for e in schedule.events]
        path = os.path.join(str(request.config.rootpath), request.node.name + ".json")
        with open(path, "w") as f:
            json.dump({"seed": schedule.seed, "events": out}, f)
    return write
"""

TESTS = """
def test_passes(dcfire, record):
    with dcfire.chaos(faults=["fire", "freeze"], duration=0.3, interval=0.02, quiet=0) as c:
        c.wait()
    record(c)


def test_fails(dcfire, record):
    c = dcfire.chaos(faults=["fire", "freeze"], duration=0.3, interval=0.02, quiet=0)
    c.wait()
    record(c)
    assert False, "the system broke"


def test_no_chaos(dcfire):
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=textwrap.dedent(TESTS))
    return pytester


def events(pytester: pytest.Pytester, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((pytester.path / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_seed_option_validated(inner: pytest.Pytester, value: str) -> None:
    result = inner.runpytest(f"--dcfire-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --dcfire-seed = '{value}' is not valid; give an integer >= 0, e.g. 1234"]
    )


def test_seed_ini_validated(inner: pytest.Pytester) -> None:
    inner.makeini("[pytest]\ndcfire_seed = twelve\n")
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: dcfire_seed = 'twelve' is not valid; give an integer*"])


def test_seed_printed_in_failure_and_report_section(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--dcfire-seed", "4242", "-rA")
    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    failure = output.split("_ test_fails _", 1)[1].split("short test summary", 1)[0]
    assert "AssertionError: the system broke" in failure
    assert "dcfire.chaos seed 4242: replay with --dcfire-seed 4242" in failure
    passes = output.split("PASSES", 1)[1]
    assert (
        "dcfire.chaos seed 4242: replay with --dcfire-seed 4242" in passes.split("test_no_chaos")[0]
    )
    assert output.count("dcfire.chaos seed") == 2  # not for the test without chaos
    assert events(inner, "test_passes")["seed"] == 4242


def test_replay_gives_the_same_events(inner: pytest.Pytester) -> None:
    first = inner.runpytest("-k", "test_fails")
    first.assert_outcomes(failed=1)
    match = re.search(
        r"dcfire\.chaos seed (\d+): replay with --dcfire-seed (\d+)", first.stdout.str()
    )
    assert match is not None and match.group(1) == match.group(2)
    seed = int(match.group(1))
    drawn = events(inner, "test_fails")
    assert drawn["seed"] == seed and drawn["events"]

    replay = inner.runpytest("-k", "test_fails", "--dcfire-seed", str(seed))
    replay.assert_outcomes(failed=1)
    assert events(inner, "test_fails") == drawn

    inner.makeini(f"[pytest]\ndcfire_seed = {seed}\n")
    by_ini = inner.runpytest("-k", "test_fails")
    by_ini.assert_outcomes(failed=1)
    assert events(inner, "test_fails") == drawn

    other = inner.runpytest("-k", "test_fails", "--dcfire-seed", str(seed + 1))
    other.assert_outcomes(failed=1)
    assert events(inner, "test_fails") != drawn


def test_seed_option_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--dcfire-seed=N*", "*dcfire_seed*"])
