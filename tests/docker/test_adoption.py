"""Adopting containers the plugin did not start: one started with the docker SDK before
the session, one started by a testcontainers-python fixture, and a whole compose project
started with `docker-compose` before pytest and adopted by name.

Each inner session is a subprocess, as a user's run; the outer test made the foreign
containers, checks afterwards that they are still there and running (never removed,
renamed or re-created), and removes them itself.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import pytest
from inner_session import ECHO, ECHO_HELPERS, echo_topology

pytestmark = pytest.mark.docker

ECHO_CMD = ["python3", "-c", ECHO]
#: Containers made by these tests carry this label (not ours: no pytest-dcfire labels).
TEST_LABEL = "pytest-dcfire-tests.adoption"

TOPOLOGY = echo_topology(volumes=False)

HELPERS = (
    ECHO_HELPERS
    + """
import docker

from pytest_dcfire import DcfireError, FireError, ConfigError


def started_at(handle):
    handle.container.reload()
    return handle.container.attrs["State"]["StartedAt"]
"""
)


def echo_once(ip: str, timeout: float = 3.0) -> bytes:
    with socket.create_connection((ip, 7000), timeout=timeout) as s:
        s.sendall(b"ping")
        return s.recv(100)


def wait_echo(ip: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if echo_once(ip, 1.0) == b"ping":
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def ip_of(container: Any) -> str:
    container.reload()
    nets = container.attrs["NetworkSettings"]["Networks"]
    return str(next(iter(nets.values()))["IPAddress"])


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def foreign(client: docker.DockerClient) -> Iterator[Callable[[str], Any]]:
    """Start echo containers with the SDK, as another fixture or script would; remove after."""
    made: list[Any] = []

    def start(name: str) -> Any:
        container = client.containers.run(
            "debian:bookworm-slim",
            ECHO_CMD,
            name=f"adopt-{name}-{uuid.uuid4().hex[:8]}",
            labels={TEST_LABEL: "sdk"},
            init=True,
            detach=True,
        )
        made.append(container)
        wait_echo(ip_of(container))
        return container

    yield start
    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def run_inner(
    pytester: pytest.Pytester, tests: str, conftest: str, *args: str, ini: str = ""
) -> pytest.RunResult:
    pytester.makeini("[pytest]\ndcfire_recovery_timeout = 20\n" + ini)
    pytester.makeconftest(HELPERS + textwrap.dedent(conftest))
    pytester.makepyfile(test_inner="from conftest import *\n" + textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=300)


def test_adopt_an_sdk_container_started_before_the_session(
    pytester: pytest.Pytester, foreign: Callable[[str], Any], client: docker.DockerClient
) -> None:
    legacy, bystander, late = foreign("legacy"), foreign("bystander"), foreign("late")
    before = {c.id: (c.name, c.attrs["Created"]) for c in (legacy, bystander, late)}
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    pytester._monkeypatch.setenv("LEGACY", legacy.id)
    pytester._monkeypatch.setenv("BYSTANDER", bystander.name)
    pytester._monkeypatch.setenv("LATE", late.id[:12])
    result = run_inner(
        pytester,
        """
        from pytest_dcfire.plugin import SESSION_KEY


        def test_fire(legacy, dcfire, dcfire_topology):
            assert legacy in dcfire_topology.in_site("east")
            assert not is_dark(legacy)
            with dcfire.fire("east") as fire:
                assert "legacy" in fire.record.targets
                assert is_dark(legacy) and is_dark(dcfire_topology.service("echo@east"))
            assert not is_dark(legacy)


        def test_power_loss_starts_the_same_container_again(legacy, dcfire):
            first = started_at(legacy)
            with dcfire.fire("east", mode="power-loss"):
                dcfire.eventually(lambda: legacy.state() == "exited", timeout=15)
            assert legacy.state() == "running"
            assert legacy.container.id == os.environ["LEGACY"]
            assert started_at(legacy) != first
            assert echo_once(legacy.direct_address(7000)) == b"ping"


        def test_partition_and_freeze(legacy, dcfire):
            with dcfire.fire("east", mode="partition"):
                assert is_dark(legacy)
            with dcfire.fire("east", mode="freeze"):
                assert legacy.state() == "paused"
            assert legacy.state() == "running" and not is_dark(legacy)


        @dc_fire("east")
        def test_marker_burns_the_adopted_container(legacy, dcfire):
            assert is_dark(legacy)


        def test_foreign_containers_stay_refused(legacy, dcfire_topology, request):
            targets = request.config.stash[SESSION_KEY].faults.targets
            bystander = docker.from_env().containers.get(os.environ["BYSTANDER"])
            with pytest.raises(FireError, match="was not adopted"):
                targets.resolve([bystander])
            # Adopting by a name resolves it to an id once: the allow-list holds ids.
            assert targets.resolve([legacy.container])[0].id == os.environ["LEGACY"]
            own = dcfire_topology.service("echo@west").container
            with pytest.raises(DcfireError, match="made by pytest-dcfire session"):
                dcfire_topology.adopt(own, site="west")
            with pytest.raises(ConfigError, match="unknown site 'north'; valid sites: east, west"):
                dcfire_topology.adopt(bystander, site="north")


        def test_adopted_into_the_burning_site_goes_dark(dcfire_topology):
            late = dcfire_topology.adopt(os.environ["LATE"], site="west", name="late")
            assert is_dark(late)
            assert is_dark(dcfire_topology.service("echo@west"))
        """,
        """
        @pytest.fixture(scope="session")
        def legacy(dcfire_topology):
            container = docker.from_env().containers.get(os.environ["LEGACY"])
            return dcfire_topology.adopt(container, site="east", name="legacy",
                                         healthcheck={"tcp": 7000})
        """,
        "--dcfire-burn",
        "west",
        ini="dcfire_topology = topology.yml\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=6)
    # The adopted containers' storage is not ours: the fire table says so.
    result.stdout.fnmatch_lines(["*test_fire*east [[]fire]*not ours, skipped*"])
    # A power loss shuts down only the session's pools: the adopted ones' are skipped too.
    result.stdout.fnmatch_lines(["*east [[]power-loss]*not ours, skipped*"])
    assert "cleanup problem" not in out
    for container in (legacy, bystander, late):
        container.reload()
        assert container.status == "running"
        assert (container.name, container.attrs["Created"]) == before[container.id]
        assert echo_once(ip_of(container)) == b"ping"  # network restored


TC_DOCKERFILE = f"""\
FROM debian:bookworm-slim
LABEL {TEST_LABEL}=testcontainers
CMD {json.dumps(ECHO_CMD)}
"""


def test_adopt_a_testcontainers_container(pytester: pytest.Pytester) -> None:
    # testcontainers is in the `test` extra: if it is missing, the inner import fails this test.
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    (pytester.path / "tc-image").mkdir()
    (pytester.path / "tc-image" / "Dockerfile").write_text(TC_DOCKERFILE)
    # testcontainers' reaper (Ryuk) is an image pulled from a registry: not here.
    pytester._monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    result = run_inner(
        pytester,
        """
        @dc_fire("east")
        def test_burned(echo_tc, dcfire):
            assert echo_tc.adopted and is_dark(echo_tc)


        def test_power_loss_keeps_the_container(echo_tc, dcfire):
            cid = echo_tc.container.id
            with dcfire.fire("east", mode="power-loss"):
                dcfire.eventually(lambda: echo_tc.state() == "exited", timeout=15)
            assert echo_tc.container.id == cid and echo_tc.state() == "running"
            assert echo_once(echo_tc.direct_address(7000)) == b"ping"


        def test_still_the_fixtures_container(echo_tc, tc_container):
            assert tc_container.get_wrapped_container().id == echo_tc.container.id
            assert echo_tc.state() == "running"
        """,
        """
        import hashlib, pathlib
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.image import DockerImage

        HERE = pathlib.Path(__file__).parent


        @pytest.fixture(scope="session")
        def tc_container():
            recipe = (HERE / "tc-image" / "Dockerfile").read_bytes()
            tag = "pytest-dcfire-test-tc:" + hashlib.sha256(recipe).hexdigest()[:12]
            image = DockerImage(path=HERE / "tc-image", tag=tag, clean_up=False).build()
            container = DockerContainer(str(image)).start()
            yield container
            container.stop()


        @pytest.fixture(scope="session")
        def echo_tc(tc_container, dcfire_topology):
            handle = dcfire_topology.adopt(
                tc_container.get_wrapped_container(), site="east", name="echo-tc",
                healthcheck={"tcp": 7000},
            )
            yield handle
            # The fixture that started it removes it next: forget it first.
            dcfire_topology.release(handle)
        """,
        ini="dcfire_topology = topology.yml\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=3)
    assert "cleanup problem" not in out


def compose_file() -> str:
    def service(site: str | None) -> dict[str, Any]:
        labels = {TEST_LABEL: "compose"}
        if site:
            labels.update({"dcfire.site": site, "dcfire.healthcheck": "tcp:7000"})
        return {
            "image": "debian:bookworm-slim",
            "command": ECHO_CMD,
            "init": True,
            "labels": labels,
        }

    doc = {
        "version": "2.4",
        "services": {
            "db": service("east"),
            # A restart policy would start it again mid power-loss: it is suspended, then put back.
            "web": {**service("west"), "restart": "unless-stopped"},
            "tool": service(None),
        },
    }
    return json.dumps(doc, indent=2)  # JSON is YAML


@pytest.fixture
def compose_project(tmp_path: Any, client: docker.DockerClient) -> Iterator[str]:
    """`docker-compose up -d` before the inner session; `down` after the test."""
    project = f"dcfiretest{uuid.uuid4().hex[:8]}"
    (tmp_path / "docker-compose.yml").write_text(compose_file())
    base = ["docker-compose", "-p", project, "-f", str(tmp_path / "docker-compose.yml")]
    up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=180)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
            wait_echo(ip_of(c))
        yield project
    finally:
        subprocess.run([*base, "down", "-t", "2"], capture_output=True, timeout=180)


def test_adopt_a_running_compose_project_by_name(
    pytester: pytest.Pytester, compose_project: str, client: docker.DockerClient
) -> None:
    flt = {"label": f"com.docker.compose.project={compose_project}"}
    before = {c.id: c.name for c in client.containers.list(filters=flt)}
    assert len(before) == 3
    result = run_inner(
        pytester,
        """
        def test_sites_come_from_the_labels(dcfire_topology):
            assert dcfire_topology.sites == ("east", "west")
            assert [h.name for h in dcfire_topology.in_site("east")] == ["db"]
            assert [h.name for h in dcfire_topology.in_site("west")] == ["web"]
            assert "tool" not in dcfire_topology.services


        import time


        @dc_fire("east")
        def test_east_burns(dcfire_topology):
            assert is_dark(dcfire_topology.service("db"))
            assert not is_dark(dcfire_topology.service("web"))


        @dc_fire("west", mode="power-loss")
        def test_power_loss(dcfire, dcfire_topology):
            web = dcfire_topology.service("web")
            dcfire.eventually(lambda: web.state() == "exited", timeout=15)
            time.sleep(1.5)  # the engine's restart policy would have started it by now
            assert web.state() == "exited"
        """,
        "",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            f"dcfire: topology compose project {compose_project} (adopted): sites east, west*",
            f"dcfire: adopted compose project {compose_project}: east: db; west: web",
            "dcfire: not in any site (no dcfire.site label, never burned): tool",
        ]
    )
    after = {c.id: c.name for c in client.containers.list(filters=flt)}
    assert after == before  # all three still running: same ids, same names
    web = next(c for c in client.containers.list(filters=flt) if c.name.endswith("_web_1"))
    assert web.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    for cid in after:
        assert echo_once(ip_of(client.containers.get(cid))) == b"ping"


def test_burn_an_unedited_suite_against_a_compose_project(
    pytester: pytest.Pytester, compose_project: str
) -> None:
    """The suite never mentions pytest-dcfire: it finds its services on its own."""
    result = run_inner(
        pytester,
        f"""
        def address(service):
            [c] = docker.from_env().containers.list(filters={{"label": [
                "com.docker.compose.project={compose_project}",
                f"com.docker.compose.service={{service}}",
            ]}})
            return (next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"], 7000)


        def test_db_is_dark():
            with pytest.raises(TimeoutError):
                echo_once(address("db"), timeout=1.0)


        def test_web_answers():
            assert echo_once(address("web")) == b"ping"
        """,
        "",
        "--dcfire-burn",
        "east",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*(whole session: --dcfire-burn)*east [[]fire]*not ours, skipped*"]
    )


def test_compose_sites_in_the_plan_and_at_collection(
    pytester: pytest.Pytester, compose_project: str, client: docker.DockerClient
) -> None:
    flt = {"label": f"com.docker.compose.project={compose_project}"}
    before = {c.id: c.status for c in client.containers.list(all=True, filters=flt)}
    plan = run_inner(
        pytester,
        """
        @dc_fire("east")
        def test_x():
            pass
        """,
        "",
        "--dcfire-plan",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    assert plan.ret == pytest.ExitCode.OK, plan.stdout.str() + plan.stderr.str()
    plan.stdout.fnmatch_lines(
        [
            f"topology: compose project {compose_project} (adopted): 2 site(s), "
            "0 service instance(s), 2 adopted",
            "  east: db (adopted)",
            "  west: web (adopted)",
            "if east burns:",
            "  dark: db",
            f"adopted from compose project {compose_project} (burned, never removed; read from "
            "the engine, nothing changed)",
            "  not in any site (never burned): tool",
        ]
    )
    assert "PASSED" not in plan.stdout.str()  # a plan runs nothing
    assert {c.id: c.status for c in client.containers.list(all=True, filters=flt)} == before

    result = run_inner(
        pytester,
        """
        @dc_fire("north")
        def test_x():
            pass
        """,
        "",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown site 'north'; valid sites: east, west"])


def test_compose_project_not_running_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester, "def test_x():\n    pass\n", "", "--dcfire-adopt-compose", "nosuchproject"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --dcfire-adopt-compose = nosuchproject: no running container of compose "
            "project 'nosuchproject'; start it before pytest*"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_sigkilled_session_and_the_reaper_leave_an_adopted_container_running(
    pytester: pytest.Pytester, foreign: Callable[[str], Any], client: docker.DockerClient
) -> None:
    import os
    import signal
    import sys

    legacy = foreign("survivor")
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    ready = pytester.path / "ready"
    pytester.makepyfile(
        test_killed=f"""
        import os, pathlib, time
        from pytest_dcfire import dc_fire

        def test_burn_then_hang(dcfire, dcfire_topology):
            dcfire_topology.adopt({legacy.id!r}, site="east")
            dcfire.fire("east")
            pathlib.Path({str(ready)!r}).write_text(dcfire_topology.session_id)
            time.sleep(120)
        """,
        test_next="""
        def test_next_session(dcfire_topology):
            pass
        """,
    )
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_killed.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the inner session ended before burning"
            assert time.monotonic() < deadline, "the inner session never burned"
            time.sleep(0.2)
        killed_session = ready.read_text()
        with pytest.raises(OSError):
            echo_once(ip_of(legacy), timeout=1.0)  # burning
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    # The helper's dead-man switch undoes the cut of the adopted container too.
    wait_echo(ip_of(legacy), timeout=30)
    # The next session reaps what the killed one left, and leaves the adopted one alone.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_next.py", timeout=300)
    assert result.ret == 0, result.stdout.str()[-3000:]
    # (Another session starting meanwhile on this engine may have reaped it first.)
    flt = {"label": f"io.github.pytest-dcfire.session={killed_session}"}
    assert client.containers.list(all=True, filters=flt) == []
    legacy.reload()
    assert legacy.status == "running"
    assert echo_once(ip_of(legacy)) == b"ping"


def test_compose_fires_from_two_workers_take_turns(
    pytester: pytest.Pytester, compose_project: str
) -> None:
    """Every xdist worker adopts the same compose containers (its own copy of nothing else):
    their fires are serialised by the controller's fire lock, so one worker's restore never
    heals the site under another worker's test."""
    burns = """
        import json, os, pathlib, time


        @dc_fire("east")
        def test_{name}(dcfire_topology):
            start = time.time()
            assert is_dark(dcfire_topology.service("db"))
            time.sleep(0.8)
            assert is_dark(dcfire_topology.service("db"))
            (pathlib.Path(__file__).parent / "{name}.json").write_text(json.dumps(
                {{"start": start, "end": time.time(), "worker": os.environ["PYTEST_XDIST_WORKER"]}}
            ))
        """
    pytester.makepyfile(test_b="from conftest import *\n" + textwrap.dedent(burns.format(name="b")))
    result = run_inner(
        pytester,
        burns.format(name="a"),
        "",
        "-n",
        "2",
        "--dist",
        "loadfile",
        ini=f"dcfire_adopt_compose = {compose_project}\n",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    a, b = (json.loads((pytester.path / f"{n}.json").read_text()) for n in "ab")
    assert a["worker"] != b["worker"], (a, b)
    overlap = min(a["end"], b["end"]) - max(a["start"], b["start"])
    assert overlap <= 0, f"the two workers burned east at once for {overlap:.3f} s"
