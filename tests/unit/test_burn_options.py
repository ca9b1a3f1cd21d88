"""--dcfire-burn and dcfire_burn: validated at startup, shown in the header (no Docker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def test_cli_unknown_site_is_a_usage_error(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
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


def test_ini_unknown_site_is_a_usage_error(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
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


def test_header_says_which_sites_are_dark(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
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


# -- --dcfire-burn-mode / dcfire_burn_mode, dcfire_burn_timeout --------------------------


def test_burn_mode_cli_beats_ini_and_accepts_every_marker_mode() -> None:
    from pytest_dcfire.burn import burn_mode
    from pytest_dcfire.modes import MODES

    assert burn_mode(None, "") == "fire"
    assert burn_mode(None, "freeze") == "freeze"
    assert burn_mode("partition", "freeze") == "partition"
    assert [burn_mode(m, None) for m in MODES] == list(MODES)


def test_unknown_burn_mode_names_the_valid_ones() -> None:
    from pytest_dcfire.burn import burn_mode

    with pytest.raises(ConfigError) as err:
        burn_mode("powerloss", None)
    assert str(err.value) == (
        "--dcfire-burn-mode powerloss: unknown mode 'powerloss' (did you mean 'power-loss'?); "
        "valid modes: fire, power-loss, crash, partition, freeze"
    )
    with pytest.raises(ConfigError, match=r"^dcfire_burn_mode melt: unknown mode 'melt'; valid"):
        burn_mode(None, "melt")


def test_bad_burn_mode_in_the_ini_is_a_usage_error(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = ansan\ndcfire_burn_mode = melt\n"
    )
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: dcfire_burn_mode melt: unknown mode 'melt'; valid *"])
    assert "Traceback" not in result.stderr.str()


def test_header_names_the_mode_and_the_per_test_timeout(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = ansan\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--dcfire-burn-mode", "power-loss", "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "dcfire: whole session under fire (--dcfire-burn): ansan dark (mode power-loss)*",
            "dcfire: each test may take 300 s under the burn (pytest-timeout, "
            "dcfire_burn_timeout; *",
        ]
    )
    result = pytester.runpytest("--timeout", "7", "--collect-only")
    result.stdout.fnmatch_lines(["dcfire: per-test timeout: the run's own (pytest-timeout)"])


def test_burn_timeout_is_checked(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    from pytest_dcfire.burn import per_test_timeout

    assert (
        per_test_timeout("") == 300.0
        and per_test_timeout("0") == 0.0
        and per_test_timeout("90") == 90.0
    )
    write_topology()
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = ansan\n"
        "dcfire_burn_timeout = soon\n"
    )
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: dcfire_burn_timeout = soon: not a number of seconds; use e.g. 120, or 0 for none"]
    )


def test_tests_get_the_burn_timeout_unless_they_have_one(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_burn = ansan\ndcfire_burn_timeout = 45\n"
    )
    pytester.makeconftest(
        """
        def pytest_collection_finish(session):
            for item in session.items:
                mark = item.get_closest_marker("timeout")
                print("TIMEOUT", item.name, mark.args, mark.kwargs)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        def test_plain():
            pass

        @pytest.mark.timeout(5)
        def test_own():
            pass
        """
    )
    result = pytester.runpytest("--collect-only", "-s")
    result.stdout.fnmatch_lines(
        ["TIMEOUT test_plain (45.0,) {'func_only': True}", "TIMEOUT test_own (5,) {}"]
    )
