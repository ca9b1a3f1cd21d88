"""The pytest surface: options, ini keys, precedence and the errors of bad values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("write_topology")


def test_options_and_ini_keys_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*disaster-recovery fires (pytest-dcfire)*",
            "*--dcfire-topology=PATH*",
            "*--dcfire-keep*",
            "*--dcfire-plan*",
            "*--dcfire-report=PATH*",
            "*dcfire_topology (string)*",
            "*dcfire_recovery_timeout (string)*",
            "*dcfire_toxiproxy (string)*",
            "*dcfire_keep (string)*",
            "*dcfire_report (string)*",
        ]
    )


def test_marker_and_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    pytester.runpytest("--markers").stdout.fnmatch_lines(
        ["@pytest.mark.dc_fire(*sites, mode='fire', network=True, storage=True, each_site=False):*"]
    )
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["dcfire_topology [[]session scope[]]*", "*dcfire -- *"])


def _show_settings(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_dcfire.plugin import SESSION_KEY

        def pytest_report_header(config):
            s = config.stash[SESSION_KEY].settings
            return [f"SETTINGS topology={s.topology.name if s.topology else None} "
                    f"timeout={s.recovery_timeout} keep={s.keep} toxiproxy={s.toxiproxy}"]
        """
    )


def test_ini_values_are_read(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini(
        """
        [pytest]
        dcfire_topology = topology.yml
        dcfire_recovery_timeout = 12.5
        dcfire_keep = true
        dcfire_toxiproxy = url:http://127.0.0.1:8474
        """
    )
    _show_settings(pytester)
    result = pytester.runpytest("--co")
    result.stdout.fnmatch_lines(
        [
            "SETTINGS topology=topology.yml timeout=12.5 keep=True toxiproxy=url:http://127.0.0.1:8474"
        ]
    )


def test_cli_beats_ini(pytester: pytest.Pytester, write_topology: Callable[..., Path]) -> None:
    write_topology()
    write_topology(name="other.yml")
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_keep = false\n")
    _show_settings(pytester)
    result = pytester.runpytest("--co", "--dcfire-topology", "other.yml", "--dcfire-keep")
    result.stdout.fnmatch_lines(["SETTINGS topology=other.yml timeout=60.0 keep=True *"])


def test_ini_path_is_relative_to_the_ini_file(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    sub = pytester.mkdir("conf")
    write_topology(name="conf/topo.yml")
    (sub / "pytest.ini").write_text("[pytest]\ndcfire_topology = topo.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire.plugin import SESSION_KEY

        def test_show(pytestconfig):
            print("TOPOLOGY", pytestconfig.stash[SESSION_KEY].settings.topology)
        """
    )
    result = pytester.runpytest("-s", "-c", "conf/pytest.ini", "--rootdir", str(pytester.path))
    result.stdout.fnmatch_lines([f"*TOPOLOGY {sub / 'topo.yml'}"])


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        (
            "dcfire_topology = missing.yml",
            "ERROR: dcfire_topology = 'missing.yml': no such file (*missing.yml); give the path "
            "of a topology YAML or docker-compose file, relative to *",
        ),
        (
            "dcfire_recovery_timeout = soon",
            "ERROR: dcfire_recovery_timeout = 'soon' is not valid; give a positive number of "
            "seconds, e.g. 60",
        ),
        (
            "dcfire_recovery_timeout = -3",
            "ERROR: dcfire_recovery_timeout = '-3' is not valid*",
        ),
        (
            "dcfire_keep = maybe",
            "ERROR: dcfire_keep = 'maybe' is not a boolean; use one of: true, false, 1, 0",
        ),
        (
            "dcfire_toxiproxy = docker",
            "ERROR: dcfire_toxiproxy = 'docker' is not valid; use embedded, image:<ref>*",
        ),
        (
            "dcfire_toxiproxy = url:localhost:8474",
            "ERROR: dcfire_toxiproxy = 'url:localhost:8474' is not valid*",
        ),
    ],
)
def test_bad_ini_values_are_usage_errors(
    pytester: pytest.Pytester, ini: str, expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest("--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_missing_cli_topology_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--co", "--dcfire-topology", "nope.yml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dcfire-topology = 'nope.yml': no such file*"])


def test_header_names_the_topology(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["dcfire: topology *topology.yml: sites pangyo, ansan; 3 service instance(s)"]
    )
    result.assert_outcomes(passed=1)


def test_a_suite_without_topology_runs_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): assert 1 + 1 == 2")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "dcfire:" not in result.stdout.str()


def test_asking_for_the_topology_without_one_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_needs_it(dcfire_topology):
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*dcfire: no topology configured: set dcfire_topology in pytest.ini*"]
    )
    # Adopted containers only (testcontainers) need no topology: the message says how.
    assert "declare their sites (dcfire_sites = east west)" in result.stdout.str()
