"""dc_fire where pytest users put markers: module `pytestmark`, classes, parametrized tests,
and with `-m`, `-k`, `--lf`. A class marker and a test marker burn together.

No Docker here: the inner session's conftest replaces the `dcfire` fixture by a real
`FireController` over a fake system whose steps only record what they would cut, so the
plugin's own collection check and `pytest_runtest_call` ignition run unchanged.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

import pytest

TOPOLOGY = """
sites: [a, b, c]
services:
  svc:
    site: [a, b, c]
    image: debian:bookworm-slim
"""

#: Records every ignition of the inner session as one JSON line in burned.jsonl.
RECORDING_CONFTEST = """
import json
import pytest
from pytest_dcfire.fire import FireController
from pytest_dcfire.steps import CallStep
from pytest_dcfire.timeline import Timeline
from pytest_dcfire.faults.timing import FaultTiming


class Handle:
    def __init__(self, site):
        self.name, self.site, self.container = f"svc@{site}", site, None


class FakeSystem:
    sites = ("a", "b", "c")

    def in_site(self, site):
        return [Handle(site)]

    def wait_healthy(self, handles):
        return []


@pytest.fixture
def dcfire(request):
    def make_step(effect, spec, handles):
        return CallStep(effect, lambda: FaultTiming(effect, "recorded", 0.0), lambda: None)

    controller = FireController(FakeSystem(), make_step, Timeline(), 5.0, item=request.node)
    yield controller
    controller.restore()
    with open(request.config.rootpath / "burned.jsonl", "a") as f:
        for fire in controller.fires:
            f.write(json.dumps({
                "test": request.node.nodeid,
                "sites": list(fire.sites),
                "mode": fire.mode,
                "restored": not fire.burning,
            }) + "\\n")
"""


#: What the inner session burned, by test name: (sites, mode) per ignition.
Burned = Callable[[], dict[str, list[tuple[tuple[str, ...], str]]]]


@pytest.fixture
def inner(pytester: pytest.Pytester) -> Burned:
    """Set up an inner session with the recording conftest; return a runner and a reader."""
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makeconftest(RECORDING_CONFTEST)

    def burned() -> dict[str, list[tuple[tuple[str, ...], str]]]:
        out: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        path = pytester.path / "burned.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                assert rec["restored"], rec
                name = rec["test"].split("::", 1)[1]
                out.setdefault(name, []).append((tuple(rec["sites"]), rec["mode"]))
            path.unlink()
        return out

    return burned


def test_module_pytestmark_burns_every_test_of_the_module(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        pytestmark = dc_fire("a")

        def test_one(dcfire):
            assert dcfire.burning == ("a",)

        def test_two():
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert inner() == {"test_one": [(("a",), "fire")], "test_two": [(("a",), "fire")]}


def test_module_pytestmark_list_and_a_test_marker_combine(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_dcfire import dc_fire

        pytestmark = [pytest.mark.slowish, dc_fire("a")]

        @dc_fire("b")
        def test_both(dcfire):
            assert set(dcfire.burning) == {"a", "b"}
        """
    )
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\nmarkers = slowish\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    # Same mode: one fire, one cut, both sites (the test's own marker comes first).
    assert inner() == {"test_both": [(("b", "a"), "fire")]}


def test_class_marker_and_test_marker_burn_both_sites_in_one_fire(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        @dc_fire("a")
        class TestFailover:
            def test_class_only(self, dcfire):
                assert dcfire.burning == ("a",)

            @dc_fire("b")
            def test_class_and_test(self, dcfire):
                assert set(dcfire.burning) == {"a", "b"}

            @dc_fire("c", mode="freeze")
            def test_other_mode_is_a_second_fire(self, dcfire):
                assert set(dcfire.burning) == {"a", "c"}

        def test_outside_the_class_does_not_burn():
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    assert inner() == {
        "TestFailover::test_class_only": [(("a",), "fire")],
        "TestFailover::test_class_and_test": [(("b", "a"), "fire")],
        "TestFailover::test_other_mode_is_a_second_fire": [
            (("c",), "freeze"),
            (("a",), "fire"),
        ],
    }


def test_parametrized_tests_burn_per_parameter(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_dcfire import dc_fire

        @dc_fire("a")
        @pytest.mark.parametrize("n", [1, 2])
        def test_marked_for_all(n, dcfire):
            assert dcfire.burning == ("a",)

        @pytest.mark.parametrize(
            "site",
            [pytest.param("b", marks=dc_fire("b")), pytest.param("c", marks=dc_fire("c")), "none"],
        )
        def test_marked_per_param(site, dcfire_burning_or_none):
            pass

        @pytest.fixture
        def dcfire_burning_or_none(request):
            return None
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)
    assert inner() == {
        "test_marked_for_all[1]": [(("a",), "fire")],
        "test_marked_for_all[2]": [(("a",), "fire")],
        "test_marked_per_param[b]": [(("b",), "fire")],
        "test_marked_per_param[c]": [(("c",), "fire")],
    }


SELECTION = """
import pytest
from pytest_dcfire import dc_fire

pytestmark = dc_fire("a")

class TestGroup:
    pytestmark = [dc_fire("b")]

    def test_in_class(self):
        pass

def test_fails_once(request):
    flag = request.config.rootpath / "failed-once"
    if not flag.exists():
        flag.write_text("x")
        raise AssertionError("first run fails")

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    pass
"""


def test_selection_with_m_k_and_marker_expressions(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(test_sel=SELECTION)
    (pytester.path / "failed-once").write_text("x")
    # Module-level and class markers count for -m: every test here carries dc_fire.
    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "dc_fire")
    result.assert_outcomes(passed=4)
    assert set(inner()) == {
        "TestGroup::test_in_class",
        "test_fails_once",
        "test_param[1]",
        "test_param[2]",
    }
    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "not dc_fire")
    result.assert_outcomes(deselected=4)
    assert inner() == {}
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "in_class or param and 2")
    result.assert_outcomes(passed=2, deselected=2)
    assert inner() == {
        "TestGroup::test_in_class": [(("b", "a"), "fire")],
        "test_param[2]": [(("a",), "fire")],
    }


def test_last_failed_reruns_burn_again(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(test_sel=SELECTION)
    pytester.runpytest().assert_outcomes(passed=3, failed=1)
    assert len(inner()) == 4
    result = pytester.runpytest("--lf")
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*"])
    assert result.parseoutcomes().get("passed") == 1
    assert "failed" not in result.parseoutcomes()
    assert inner() == {"test_fails_once": [(("a",), "fire")]}


def test_bad_class_marker_is_a_collection_error_naming_the_test(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        pytestmark = dc_fire("a")

        @dc_fire("bb")
        class TestX:
            def test_one(self):
                pass
        """
    )
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid dc_fire marker(s):",
            "*TestX::test_one: @dc_fire('bb'): unknown site 'bb' (did you mean 'b'?); "
            "valid sites: a, b, c",
        ]
    )
    assert "Traceback" not in result.stderr.str()
    assert inner() == {}


def test_collect_only_starts_nothing_and_lists_marked_tests(
    pytester: pytest.Pytester,
    inner: Burned,
) -> None:
    pytester.makepyfile(test_sel=SELECTION)
    result = pytester.runpytest("--collect-only", "-q", "-m", "dc_fire")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_sel.py::TestGroup::test_in_class", "*test_param[[]2]"])
    assert inner() == {}
