"""The dc_fire marker: validated at collection, with messages that name what is valid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_dcfire import dc_fire


def test_dc_fire_is_pytest_mark_dc_fire() -> None:
    assert dc_fire == pytest.mark.dc_fire
    assert dc_fire("a").mark == pytest.mark.dc_fire("a").mark


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "dc_fire('pangyoo')",
            "*@dc_fire('pangyoo'): unknown site 'pangyoo' (did you mean 'pangyo'?); "
            "valid sites: pangyo, ansan",
        ),
        ("dc_fire()", "*@dc_fire(): name at least one site to burn; one of: ansan, pangyo"),
        (
            "dc_fire('pangyo', mode='fir')",
            "*unknown mode 'fir' (did you mean 'fire'?); valid modes: fire, power-loss, "
            "crash, partition, freeze",
        ),
        (
            "dc_fire('pangyo', netwrok=False)",
            "*unknown keyword 'netwrok' (did you mean 'network'?); valid keywords: mode, "
            "network, storage, each_site",
        ),
        (
            "dc_fire('pangyo', storage='no')",
            "*storage='no' must be True, False or a disk fault kind: freeze, fail, full",
        ),
        (
            "dc_fire('pangyo', mode='power-loss', storage='full')",
            "*storage='full' needs mode 'fire' or 'crash'*",
        ),
        ("dc_fire(3)", "*site 3 is not a site name (a string); one of: ansan, pangyo"),
        (
            "dc_fire('pangyo', mode='partition', network=False)",
            "*mode 'partition' with network=False and storage=False does nothing",
        ),
    ],
)
def test_bad_markers_stop_the_run_before_anything_starts(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
    marker: str,
    expected: str,
) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_dcfire import dc_fire

        @{marker}
        def test_burn():
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid dc_fire marker(s):", expected])
    assert "Traceback" not in result.stderr.str()


def test_marker_without_topology_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        @dc_fire("a")
        def test_burn():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown site 'a'; valid sites: (no topology configured)"])


def test_valid_markers_collect(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        @dc_fire("pangyo")
        @dc_fire("ansan", mode="partition")
        def test_burn():
            pass

        @dc_fire("pangyo", "ansan", mode="power-loss", storage=False)
        def test_both():
            pass
        """
    )
    result = pytester.runpytest("--co", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_burn", "*test_both"])
