"""Existing suites under fire: class and test markers together, and `--dcfire-burn SITE`
darkening a whole unedited suite. Each test runs an inner pytest session (a subprocess)
against a two-site topology of TCP echo servers, then checks from outside that everything
of that session is gone.
"""

from __future__ import annotations

import textwrap

import docker
import pytest
from inner_session import ECHO_HELPERS, echo_topology

pytestmark = pytest.mark.docker


HELPERS = (
    ECHO_HELPERS
    + """

def write_session(topo):
    import os
    with open(os.environ["DCFIRE_TEST_SESSION_FILE"], "w") as f:
        f.write(topo.session_id)
"""
)


def run_inner(
    pytester: pytest.Pytester, tests: str, *args: str, volumes: bool = False
) -> tuple[pytest.RunResult, str]:
    """Run `tests` in an inner session; its result and the id of its dcfire session."""
    (pytester.path / "topology.yml").write_text(echo_topology(volumes))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n")
    pytester.makepyfile(test_inner=HELPERS + textwrap.dedent(tests))
    session_file = pytester.path / "session-id"
    pytester._monkeypatch.setenv("DCFIRE_TEST_SESSION_FILE", str(session_file))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=300)
    session = session_file.read_text().strip() if session_file.exists() else ""
    return result, session


def assert_nothing_left(session: str) -> None:
    assert session.startswith("dcf"), "the inner session did not say who it was"
    client = docker.from_env()
    try:
        flt = {"label": f"io.github.pytest-dcfire.session={session}"}
        assert client.containers.list(all=True, filters=flt) == []
        assert client.volumes.list(filters=flt) == []
        assert client.networks.list(filters=flt) == []
    finally:
        client.close()


def test_class_marker_and_test_marker_burn_both_sites(pytester: pytest.Pytester) -> None:
    result, session = run_inner(
        pytester,
        """
        @dc_fire("east")
        class TestBoth:
            @dc_fire("west")
            def test_both_dark(self, dcfire, dcfire_topology):
                write_session(dcfire_topology)
                assert set(dcfire.burning) == {"east", "west"}
                assert is_dark(dcfire_topology.service("echo@east"))
                assert is_dark(dcfire_topology.service("echo@west"))

        def test_after_both_answer(dcfire_topology):
            for name in ("echo@east", "echo@west"):
                assert echo_once(dcfire_topology.service(name).direct_address(7000)) == b"ping"
        """,
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=2)
    # One fire (same mode): both sites cut together.
    result.stdout.fnmatch_lines(["*dcfire: fires*", "test_both_dark*west+east [[]fire]*"])
    assert_nothing_left(session)


def test_burn_darkens_an_unedited_suite_and_restores_everything(
    pytester: pytest.Pytester,
) -> None:
    result, session = run_inner(
        pytester,
        """
        def test_plain_test_sees_east_dark(dcfire_topology):
            write_session(dcfire_topology)
            assert is_dark(dcfire_topology.service("echo@east"))
            assert echo_once(dcfire_topology.service("echo@west").address(7000)) == b"ping"

        def test_storage_of_east_is_frozen(dcfire_topology):
            import threading
            east = dcfire_topology.service("echo@east")
            box = []
            t = threading.Thread(
                target=lambda: box.append(east.exec(["sh", "-c", "echo x > /data/f && sync /data/f"])),
                daemon=True,
            )
            t.start()
            t.join(2.0)
            assert t.is_alive(), "a write+sync on the burning site's pool must block"

        @dc_fire("east")
        def test_own_marker_composes(dcfire, dcfire_topology):
            assert dcfire.burning == ("east",)
            assert is_dark(dcfire_topology.service("echo@east"))

        @dc_fire("west")
        def test_other_site_too(dcfire, dcfire_topology):
            assert is_dark(dcfire_topology.service("echo@east"))
            assert is_dark(dcfire_topology.service("echo@west"))

        def test_inner_restores_left_east_dark(dcfire_topology):
            assert is_dark(dcfire_topology.service("echo@east"))
            assert not is_dark(dcfire_topology.service("echo@west"))
        """,
        "--dcfire-burn",
        "east",
        volumes=True,
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-4000:]
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "dcfire: whole session under fire (--dcfire-burn): east dark*",
            "*dcfire: fires*",
            "*whole session: --dcfire-burn*east [[]fire]*nftables*",
        ]
    )
    # The suite burn is one fire, ignited once: the inner marker on east composed with it.
    assert out.count("(whole session: --dcfire-burn)") == 1
    assert "cleanup problem" not in out
    assert_nothing_left(session)


def test_failed_recovery_of_the_suite_burn_fails_the_run(pytester: pytest.Pytester) -> None:
    """What CI relies on: a site that does not come back makes pytest exit non-zero."""
    pytester.makeconftest(
        """
        def pytest_dcfire_before_restore(fire, item):
            if item is None:  # the suite burn: its container dies before the restore
                fire.controller.system.service("echo@east").container.kill()
        """
    )
    result, session = run_inner(
        pytester,
        """
        def test_plain(dcfire_topology):
            write_session(dcfire_topology)
            assert is_dark(dcfire_topology.service("echo@east"))
        """,
        "--dcfire-burn",
        "east",
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: --dcfire-burn east: recovery at session end failed: service echo@east "
            "(site east) its container is exited*"
        ]
    )
    assert_nothing_left(session)
