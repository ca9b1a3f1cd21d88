"""--dcfire-burn and dcfire_burn: validated at startup, shown in the header (no Docker)."""

from __future__ import annotations

import pytest

from pytest_dcfire.burn import burn_sites
from pytest_dcfire.errors import ConfigError


def test_cli_beats_ini_and_duplicates_collapse() -> None:
    assert burn_sites(["a", "b", "a"], ["c"], ("a", "b", "c")) == ("a", "b")
    assert burn_sites([], ["c", "a,b"], ("a", "b", "c")) == ("c", "a", "b")
    assert burn_sites([], [], ("a",)) == ()


def test_unknown_site_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        burn_sites(["pangyoo"], [], ("pangyo", "ansan"))
    assert str(err.value) == (
        "--dcfire-burn pangyoo: unknown site 'pangyoo' (did you mean 'pangyo'?); "
        "valid sites: pangyo, ansan"
    )
    with pytest.raises(ConfigError, match=r"^dcfire_burn x: unknown site 'x'; valid sites: a$"):
        burn_sites([], ["x"], ("a",))


def test_cli_unknown_site_is_a_usage_error(pytester: pytest.Pytester, write_topology) -> None:  # type: ignore[no-untyped-def]
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--dcfire-burn", "pangyo", "--dcfire-burn", "ansn")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --dcfire-burn ansn: unknown site 'ansn' (did you mean 'ansan'?); "
            "valid sites: pangyo, ansan"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_ini_unknown_site_is_a_usage_error(pytester: pytest.Pytester, write_topology) -> None:  # type: ignore[no-untyped-def]
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = pangyo seoul\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: dcfire_burn seoul: unknown site 'seoul'; valid sites: pangyo, ansan"]
    )


def test_burn_without_a_system_says_what_to_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--dcfire-burn", "a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dcfire-burn a: there is no system to burn; set *"])


def test_header_says_which_sites_are_dark(pytester: pytest.Pytester, write_topology) -> None:  # type: ignore[no-untyped-def]
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = ansan\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    # Collection only: every test would ask for the system (and start it) in a real run.
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["dcfire: whole session under fire (--dcfire-burn): ansan dark from system start*"]
    )
    result = pytester.runpytest("--dcfire-burn", "pangyo", "--collect-only")
    result.stdout.fnmatch_lines(["dcfire: whole session under fire (--dcfire-burn): pangyo dark*"])


def test_help_documents_the_option_and_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*--dcfire-burn=SITE*", "*--dcfire-adopt-compose=PROJECT*", "*dcfire_burn (args)*"]
    )
