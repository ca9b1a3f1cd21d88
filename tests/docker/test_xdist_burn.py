"""`--dcfire-burn SITE` under pytest-xdist: one burn, ignited and restored once, whatever the
sharing mode and whether the system is adopted (a compose project started before pytest) or
started by the plugin.

Each inner run has two workers with unequal tests: a 0 s one and a few-second one. The worker
that finishes first must not heal (nor wait for) what the other still runs under, the health
wait comes at the very end, and the fire tables say who burned: the controller for what every
worker sees (adopted containers, the shared copy), each worker for its own copy.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from inner_session import ECHO, ECHO_HELPERS, echo_topology

from pytest_dcfire.runtime.engine import L_HOST, L_PID

pytestmark = pytest.mark.docker

LABEL = "pytest-dcfire-tests.xdist-burn"
ROW = "(whole session: --dcfire-burn)"


def echo_once(ip: str, timeout: float = 2.0) -> bytes:
    with socket.create_connection((ip, 7000), timeout=timeout) as s:
        s.sendall(b"ping")
        return s.recv(100)


def ip_of(container: Any) -> str:
    container.reload()
    return str(next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"])


def wait_echo(ip: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if echo_once(ip, 1.0) == b"ping":
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.fixture
def compose_project(tmp_path: Path) -> Iterator[str]:
    """An api in east (restart policy, as a user's stack has), a second api in west."""

    def service(site: str, **extra: Any) -> dict[str, Any]:
        return {
            "image": "debian:bookworm-slim",
            "command": ["python3", "-c", ECHO],
            "init": True,
            "labels": {LABEL: "compose", "dcfire.site": site, "dcfire.healthcheck": "tcp:7000"},
            **extra,
        }

    doc = {
        "version": "2.4",
        "services": {"api": service("east", restart="unless-stopped"), "apiwest": service("west")},
    }
    project = f"dcfireburn{uuid.uuid4().hex[:8]}"
    (tmp_path / "docker-compose.yml").write_text(json.dumps(doc))
    base = ["docker-compose", "-p", project, "-f", str(tmp_path / "docker-compose.yml")]
    client = docker.from_env()
    try:
        up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr[-2000:]
        for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
            wait_echo(ip_of(c))
        yield project
    finally:
        subprocess.run([*base, "down", "-t", "2"], capture_output=True, timeout=180)
        client.close()


#: The 0 s test and the long one, one per worker (loadgroup). Both see east dark; the long
#: one checks again after the other worker has finished its session.
TESTS = ECHO_HELPERS + textwrap.dedent(
    """
    import os, pathlib, time

    import docker

    DIR = pathlib.Path(__file__).parent


    def east_ips():
        if os.environ.get("DCFIRE_TEST_PROJECT"):
            flt = {"label": [f"com.docker.compose.project={os.environ['DCFIRE_TEST_PROJECT']}",
                             "dcfire.site=east"]}
            cs = docker.from_env().containers.list(filters=flt)
            return [list(c.attrs["NetworkSettings"]["Networks"].values())[0]["IPAddress"]
                    for c in cs]
        return []


    def dark(ip):
        try:
            return echo_once((ip, 7000), timeout=1.0) != b"ping"
        except TimeoutError:
            return True


    def check_dark(request):
        topo = request.getfixturevalue("dcfire_topology")  # this worker's (or the shared) copy
        ips = set(east_ips()) | {h.ip for h in topo.in_site("east")}
        assert ips and all(dark(ip) for ip in ips), ips


    @pytest.mark.xdist_group("fast")
    def test_fast(request):
        check_dark(request)
        (DIR / "fast.done").write_text(os.environ["PYTEST_XDIST_WORKER"])


    @pytest.mark.xdist_group("slow")
    def test_slow(request):
        check_dark(request)
        time.sleep(4)
        check_dark(request)  # the other worker's session is over by now
    """
)


#: Every process of the inner run (controller and workers) writes its pid: what each of them
#: made carries it as a label, and nothing must be left.
PIDS = """
import os, pathlib

def pytest_configure(config):
    (pathlib.Path(str(config.rootpath)) / f"pid-{os.getpid()}").write_text("")
"""


def run(pytester: pytest.Pytester, ini: str, *args: str, conftest: str = "") -> pytest.RunResult:
    pytester.makeini("[pytest]\ndcfire_recovery_timeout = 20\n" + ini)
    pytester.makeconftest(PIDS + textwrap.dedent(conftest))
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "-n", "2", "--dist", "loadgroup", *args, timeout=300
    )
    pids = [p.name.split("-", 1)[1] for p in pytester.path.glob("pid-*")]
    assert len(pids) == 3, pids  # the controller and two workers
    client = docker.from_env()
    try:
        for pid in pids:
            left = client.containers.list(
                all=True, filters={"label": [f"{L_PID}={pid}", f"{L_HOST}={socket.gethostname()}"]}
            )
            assert left == [], f"process {pid} left {[c.name for c in left]}"
    finally:
        client.close()
    return result


@pytest.mark.parametrize("share", ["worker", "session"])
def test_adopted_compose_burns_once_in_the_controller(
    pytester: pytest.Pytester, compose_project: str, share: str
) -> None:
    pytester._monkeypatch.setenv("DCFIRE_TEST_PROJECT", compose_project)
    result = run(
        pytester,
        f"dcfire_adopt_compose = {compose_project}\ndcfire_share = {share}\n",
        "--dcfire-burn",
        "east",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    assert (pytester.path / "fast.done").exists()
    # One burn, by the controller: its own table, none from a worker.
    assert out.count(ROW) == 1, out[-5000:]
    assert "dcfire: fires (gw" not in out
    result.stdout.fnmatch_lines(["*dcfire: fires ==*", f"{ROW}*east [[]fire]*"])
    client = docker.from_env()
    try:
        for c in client.containers.list(
            filters={"label": f"com.docker.compose.project={compose_project}"}
        ):
            assert echo_once(ip_of(c)) == b"ping"  # restored at the end
    finally:
        client.close()


@pytest.mark.parametrize("share", ["worker", "session"])
def test_started_system_dark_in_every_worker_until_the_end(
    pytester: pytest.Pytester, share: str
) -> None:
    (pytester.path / "topology.yml").write_text(echo_topology(volumes=False))
    result = run(
        pytester,
        f"dcfire_topology = topology.yml\ndcfire_share = {share}\n",
        "--dcfire-burn",
        "east",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    if share == "session":  # one copy: burned once, by the controller
        assert out.count(ROW) == 1, out[-5000:]
        assert "dcfire: fires (gw" not in out
    else:  # each worker owns its copy: each burns its own, once
        assert out.count(ROW) == 2, out[-5000:]
        result.stdout.fnmatch_lines(["*dcfire: fires (gw*", f"{ROW}*east [[]fire]*"])
    assert "cleanup problem" not in out


def test_started_and_adopted_per_worker(pytester: pytest.Pytester, compose_project: str) -> None:
    """A topology file and an adopted project, a copy per worker: the controller burns the
    adopted api once, each worker its own echo@east; all of it dark until each one's end."""
    pytester._monkeypatch.setenv("DCFIRE_TEST_PROJECT", compose_project)
    (pytester.path / "topology.yml").write_text(echo_topology(volumes=False))
    result = run(
        pytester,
        f"dcfire_topology = topology.yml\ndcfire_adopt_compose = {compose_project}\n",
        "--dcfire-burn",
        "east",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    assert out.count(ROW) == 3, out[-5000:]  # the controller's, and one per worker
    result.stdout.fnmatch_lines(["*dcfire: fires ==*", f"{ROW}*east [[]fire]*not ours, skipped*"])
    result.stdout.fnmatch_lines(["*dcfire: fires (gw*", f"{ROW}*east [[]fire]*"])
    assert "cleanup problem" not in out


def test_failed_recovery_in_the_controller_fails_the_run(pytester: pytest.Pytester) -> None:
    """The controller's health wait at the very end decides the run's result."""
    (pytester.path / "topology.yml").write_text(echo_topology(volumes=False))
    result = run(
        pytester,
        "dcfire_topology = topology.yml\ndcfire_share = session\n",
        "--dcfire-burn",
        "east",
        "--junitxml",
        "junit.xml",
        conftest="""
        def pytest_dcfire_before_restore(fire, item):
            if item is None:  # the session burn: its container dies before the restore
                fire.controller.system.service("echo@east").container.kill()
        """,
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-5000:]
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*dcfire: --dcfire-burn east: recovery at session end failed: service echo@east*"]
    )
    junit = (pytester.path / "junit.xml").read_text()
    assert 'errors="1"' in junit
    assert '<property name="dcfire_burn_sites" value="east"' in junit


def test_burn_mode_under_xdist(pytester: pytest.Pytester, compose_project: str) -> None:
    """`--dcfire-burn-mode freeze`: the adopted api is paused once, unpaused at the end."""
    pytester._monkeypatch.setenv("DCFIRE_TEST_PROJECT", compose_project)
    result = run(
        pytester,
        f"dcfire_adopt_compose = {compose_project}\n",
        "--dcfire-burn",
        "east",
        "--dcfire-burn-mode",
        "freeze",
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*east dark (mode freeze)*", f"{ROW}*east [[]freeze]*"])
    client = docker.from_env()
    try:
        [api] = client.containers.list(
            filters={"label": [f"com.docker.compose.project={compose_project}", "dcfire.site=east"]}
        )
        assert api.status == "running"
        with contextlib.suppress(OSError):
            wait_echo(ip_of(api), timeout=10)
        assert echo_once(ip_of(api)) == b"ping"
    finally:
        client.close()
