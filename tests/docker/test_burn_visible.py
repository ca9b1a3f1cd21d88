"""A session burn is visible where a failure is read: the failing test's report section, the
JUnit file's testsuite properties, and the HTML report's list of the tests that ran under it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from inner_session import ECHO_HELPERS, echo_topology

pytestmark = pytest.mark.docker

TESTS = ECHO_HELPERS + (
    """

def test_west_answers(dcfire_topology):
    assert echo_once(dcfire_topology.service("echo@west").direct_address(7000)) == b"ping"


def test_east_times_out(dcfire_topology):
    echo_once(dcfire_topology.service("echo@east").direct_address(7000), timeout=1.0)


@dc_fire("west")
def test_fails_under_its_own_fire(dcfire, dcfire_topology):
    assert False, "west is dark too"
"""
)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_failure_junit_and_html_say_the_site_was_dark(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    (pytester.path / "topology.yml").write_text(echo_topology(volumes=False))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n")
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        *workers,
        "--dcfire-burn",
        "east",
        "--junitxml",
        "junit.xml",
        "--dcfire-report",
        "report.html",
        timeout=300,
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-5000:]
    result.assert_outcomes(passed=1, failed=2)
    # The failing tests' report sections name the dark sites, since when, and the containers.
    result.stdout.fnmatch_lines(
        [
            "*_ test_east_times_out _*",
            "*TimeoutError*",
            "*- dcfire: dark while this test ran -*",
            "east dark for the whole session (--dcfire-burn, mode fire) since ??:??:?? (* s "
            "before this report); containers: echo@east",
            "a dark site blackholes its ports*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_under_its_own_fire _*",
            "*- dcfire: dark while this test ran -*",
            "east dark for the whole session*",
            "west [[]fire] ignited by this test at ??:??:?? (* s before this report), still "
            "dark; containers: echo@west",
        ]
    )
    # JUnit: the burn at testsuite level, whatever the number of processes.
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["dcfire_burn_sites"] == "east"
    assert props["dcfire_burn_mode"] == "fire"
    assert props["dcfire_burn_adopted"] == ""
    # The HTML report lists every test that ran under the burn, with its outcome.
    html = (pytester.path / "report.html").read_text()
    assert "Tests under the session burn: east [fire]" in html
    assert "2 failed, 1 passed" in html
    for name, outcome in (
        ("test_west_answers", "passed"),
        ("test_east_times_out", "failed"),
        ("test_fails_under_its_own_fire", "failed"),
    ):
        row = re.search(rf"test_inner\.py::{name}</td><td>(.*?)</td>", html.replace("<wbr>", ""))
        assert row is not None and f">{outcome}<" in row.group(1), name


def test_a_client_without_timeout_is_stopped_by_the_burn_timeout(
    pytester: pytest.Pytester,
) -> None:
    """A blackholed port hangs a client that has no timeout; under a burn the plugin's
    per-test timeout (here 3 s) fails the test instead, says the site was dark, and the run
    still ends cleanly with its reports."""
    (pytester.path / "topology.yml").write_text(echo_topology(volumes=False))
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n"
        "dcfire_burn_timeout = 3\n"
    )
    pytester.makepyfile(
        test_inner="""
        import socket

        def test_hangs(dcfire_topology):
            host, port = dcfire_topology.service("echo@east").direct_address(7000)
            s = socket.socket()
            s.connect((host, port))  # no timeout: blocks on the blackholed port
            s.sendall(b"ping")
            s.recv(10)

        def test_after(dcfire_topology):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--dcfire-burn", "east", "--junitxml", "junit.xml", timeout=300
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-5000:]
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "dcfire: each test may take 3 s under the burn (pytest-timeout, dcfire_burn_timeout*",
            "*Failed: Timeout (>3.0s) from pytest-timeout*",
            "*- dcfire: dark while this test ran -*",
            "east dark for the whole session*containers: echo@east",
        ]
    )
    assert (pytester.path / "junit.xml").exists()
    assert "cleanup problem" not in out
