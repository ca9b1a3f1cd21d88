# ruff: noqa: F811 (the fixtures of test_adoption.py, imported, then requested by name)
"""Adoption without a topology: sites from `dcfire_sites`, dependencies between adopted
members (blast radius), `adopt(healthcheck=)` waiting for health, and a stopped member of an
adopted compose project reported as "not running" (not as an unknown site).

The foreign containers are made by the outer test (fixtures of test_adoption.py) and removed
by it; the inner sessions must leave them running and untouched.
"""

from __future__ import annotations

import docker
import pytest
from test_adoption import (  # noqa: F401
    ECHO_CMD,
    client,
    compose_project,
    echo_once,
    foreign,
    ip_of,
    run_inner,
)

pytestmark = pytest.mark.docker


def test_adopted_containers_alone_with_sites_from_the_ini(
    pytester: pytest.Pytester, foreign: object, client: docker.DockerClient
) -> None:
    """No topology file, no compose project: `dcfire_sites` and two adopted containers,
    the west one depending on the east one (by label), burned and restored."""
    db, api = foreign("db"), foreign("api")  # type: ignore[operator]
    pytester._monkeypatch.setenv("DB", db.id)
    pytester._monkeypatch.setenv("API", api.id)
    result = run_inner(
        pytester,
        """
        def test_blast_radius_counts_adopted_members(db, api, dcfire_topology):
            east = dcfire_topology.blast_radius("east")
            assert east.dark_names == ("db",)
            assert [s.describe() for s in east.stranded] == [
                "api (needs db: every instance is in east)"
            ]
            assert dcfire_topology.blast_radius("west").dark_names == ("api",)


        @dc_fire("east")
        def test_east_burns(db, api):
            assert is_dark(db) and not is_dark(api)


        def test_restored(db, api):
            assert not is_dark(db) and not is_dark(api)


        def test_a_dependency_on_no_member_is_refused(dcfire_topology):
            with pytest.raises(ConfigError, match=r"depends_on 'dbb' names no member \\(did you mean 'db'\\?\\)"):
                dcfire_topology.adopt(os.environ["API"], site="west", name="api2", depends_on="dbb")
        """,
        """
        @pytest.fixture(scope="session")
        def db(dcfire_topology):
            return dcfire_topology.adopt(os.environ["DB"], site="east", name="db",
                                         healthcheck={"tcp": 7000})


        @pytest.fixture(scope="session")
        def api(db, dcfire_topology):
            return dcfire_topology.adopt(os.environ["API"], site="west", name="api",
                                         healthcheck={"tcp": 7000}, depends_on=["db"])
        """,
        ini="dcfire_sites = east west\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["dcfire: topology *dcfire_sites (adopted containers only)*"])
    assert "service instance(s) healthy" not in out  # nothing was started
    for container in (db, api):
        container.reload()
        assert container.status == "running"
        assert echo_once(ip_of(container)) == b"ping"


def test_adopt_waits_for_health_and_gives_up_clearly(
    pytester: pytest.Pytester, client: docker.DockerClient
) -> None:
    """A container whose server starts late is adopted once it answers; one that never
    answers is refused after `timeout` seconds, and is not a member."""
    late = client.containers.run(
        "debian:bookworm-slim",
        ["sh", "-c", 'until [ -e /tmp/go ]; do sleep 0.1; done; exec python3 -c "$ECHO"'],
        environment={"ECHO": ECHO_CMD[2]},
        labels={"pytest-dcfire-tests.adoption": "late"},
        init=True,
        detach=True,
    )
    mute = client.containers.run(
        "debian:bookworm-slim",
        ["sleep", "300"],
        labels={"pytest-dcfire-tests.adoption": "mute"},
        init=True,
        detach=True,
    )
    try:
        pytester._monkeypatch.setenv("LATE", late.id)
        pytester._monkeypatch.setenv("MUTE", mute.id)
        result = run_inner(
            pytester,
            """
            import threading


            def test_waits_until_it_answers(dcfire_topology):
                late = docker.from_env().containers.get(os.environ["LATE"])
                go = threading.Timer(1.0, lambda: late.exec_run(["touch", "/tmp/go"]))
                go.start()
                handle = dcfire_topology.adopt(late, site="east", name="late",
                                               healthcheck={"tcp": 7000}, timeout=60)
                assert not go.is_alive()  # adopt returned after the server was let go
                assert echo_once(handle.direct_address(7000)) == b"ping"  # no wait needed


            def test_gives_up_after_its_timeout(dcfire_topology):
                with pytest.raises(DcfireError) as err:
                    dcfire_topology.adopt(os.environ["MUTE"], site="west", name="mute",
                                          healthcheck="tcp:7000", timeout=2)
                assert str(err.value).startswith(
                    "dcfire_topology.adopt('mute', site='west'): not adopted, its health check "
                    "did not pass within 2 s (pass timeout=... for a slower start): "
                    "service mute (site west) not healthy (tcp port 7000)"
                )
                assert "mute" not in dcfire_topology.services
            """,
            "",
            ini="dcfire_sites = east west\n",
        )
        out = result.stdout.str()
        assert result.ret == 0, out[-5000:]
        result.assert_outcomes(passed=2)
    finally:
        for container in (late, mute):
            container.remove(force=True)


def test_a_stopped_compose_member_is_not_running_not_an_unknown_site(
    pytester: pytest.Pytester, compose_project: str, client: docker.DockerClient
) -> None:
    flt = {
        "label": [f"com.docker.compose.project={compose_project}", "com.docker.compose.service=web"]
    }
    [web] = client.containers.list(filters=flt)
    web.stop(timeout=2)
    plan = run_inner(
        pytester,
        "def test_x():\n    pass\n",
        "",
        "--dcfire-plan",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    assert plan.ret == 0, plan.stdout.str() + plan.stderr.str()
    plan.stdout.fnmatch_lines(
        [
            "  east: db (adopted)",
            "  west: web (adopted)",
            "  not running (a session would refuse them): web (not running: exited)",
        ]
    )
    result = run_inner(
        pytester,
        "def test_x(dcfire_topology):\n    pass\n",
        "",
        "--dcfire-burn",
        "west",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    out = result.stdout.str() + result.stderr.str()
    assert "unknown site" not in out
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"dcfire: adopted compose project {compose_project}: east: db; west: web (not "
            "running: exited)",
            f"*dcfire_adopt_compose = {compose_project}: service web (site west) is not running "
            f"(exited); start it before pytest: docker compose -p {compose_project} up -d --wait",
        ]
    )
    web.reload()
    assert web.status == "exited"  # left as it was found
