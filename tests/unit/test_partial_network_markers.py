"""`@partition(a, b, one_way=True)`, `@partition([a, b], c)` and `@flaky_network(target,
loss=)`: validated at collection like every fault marker, one clear error each, and
documented by `pytest --markers`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import pytest_dcfire
from pytest_dcfire import flaky_network, partition

THREE_SITES = """
sites: [pangyo, ansan, daejeon]
services:
  api:
    site: [pangyo, ansan, daejeon]
    image: debian:bookworm-slim
"""


def test_the_marker_twins_are_pytest_marks() -> None:
    assert flaky_network == pytest.mark.flaky_network
    assert (
        partition("a", "b", one_way=True).mark == pytest.mark.partition("a", "b", one_way=True).mark
    )
    assert "flaky_network" in pytest_dcfire.__all__


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "partition('pangyo', 'ansan', one_way='yes')",
            "*@partition('pangyo', 'ansan', one_way='yes'): one_way='yes' must be True or False",
        ),
        (
            "partition('pangyo', 'ansan', one_wya=True)",
            "*unknown keyword 'one_wya' (did you mean 'one_way'?); valid keywords: one_way",
        ),
        (
            "partition('pangyo', 'ansan', 'daejeon', one_way=True)",
            "*one_way=True needs exactly two sites or groups (from, to), got 3",
        ),
        (
            "partition(['pangyo', 'ansna'], 'daejeon')",
            "*unknown site 'ansna' (did you mean 'ansan'?); valid sites: pangyo, ansan, daejeon",
        ),
        (
            "partition(['pangyo', 'ansan'], 'ansan')",
            "*site 'ansan' is in two groups; a partition is between different sites",
        ),
        (
            "flaky_network('pangyo')",
            "*@flaky_network('pangyo'): give loss= (the share of packets lost, e.g. loss=0.2)",
        ),
        (
            "flaky_network('pangyo', loss=30)",
            "*loss=30 must be a share of packets from 0.01 to 1 in whole percent (e.g. 0.2)",
        ),
        (
            "flaky_network('apj', loss=0.3)",
            "*unknown site or service 'apj' (did you mean 'api'?); valid: pangyo, ansan, "
            "daejeon, api@pangyo, api@ansan, api@daejeon, api",
        ),
        (
            "flaky_network('api', los=0.3)",
            "*unknown keyword 'los' (did you mean 'loss'?); valid keywords: loss",
        ),
    ],
)
def test_bad_markers_stop_the_run_before_anything_starts(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
    marker: str,
    expected: str,
) -> None:
    write_topology(THREE_SITES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        f"""
        from pytest_dcfire import flaky_network, partition

        @{marker}
        def test_cut():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid * marker(s):", expected])
    assert "Traceback" not in result.stderr.str()


def test_valid_markers_collect_and_are_documented(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    write_topology(THREE_SITES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        import pytest
        from pytest_dcfire import flaky_network, partition

        @partition("pangyo", "ansan", one_way=True)
        def test_one_way():
            pass

        @partition(["pangyo", "daejeon"], "ansan")
        def test_groups():
            pass

        @flaky_network("api@ansan", loss=0.25)
        def test_flaky():
            pass

        @pytest.mark.flaky(reruns=2)  # another plugin's marker: not ours, left alone
        def test_rerun_marker():
            pass
        """
    )
    result = pytester.runpytest("--co", "-q", "-p", "no:warnings")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_one_way", "*test_groups", "*test_flaky"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(
        [
            "@pytest.mark.partition(site_a, site_b, one_way=False):*",
            "@pytest.mark.flaky_network(site_or_service, loss=0.2):*",
        ]
    )


def test_the_plan_names_one_way_groups_and_flaky(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    write_topology(THREE_SITES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import flaky_network, partition

        @partition("pangyo", "ansan", one_way=True)
        @partition(["pangyo", "daejeon"], "ansan")
        @flaky_network("api@ansan", loss=0.25)
        def test_all():
            pass
        """
    )
    result = pytester.runpytest("--dcfire-plan")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(
        [
            "link-fault drills: 1 test(s) with @brownout, @partition or @flaky_network",
            "*::test_all  partitions pangyo+daejeon | ansan; partitions pangyo -> ansan; "
            "makes api@ansan flaky (25% loss)",
        ]
    )
