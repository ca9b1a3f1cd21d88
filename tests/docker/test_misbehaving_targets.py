"""Targets that misbehave during a fire, through the plugin on real Docker: a container
removed or exited while its site burns, the helper killed mid-session, and a service whose
health check never passes again after the restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from dcfire_inner import TOPOLOGY, assert_clean, start_inner

pytestmark = pytest.mark.docker

COMMON = """
import os, pathlib, subprocess, threading
import docker
import pytest

MARK = pathlib.Path(os.environ["DCFIRE_MARK"])
ROLE = "io.github.pytest-dcfire.role"
SESSION = "io.github.pytest-dcfire.session"


def east(topology):
    return topology.service("echo@east")


def writes(handle, timeout=15):
    \"\"\"True if a write + sync on the pool volume completes (the pool is not frozen).\"\"\"
    box = []
    t = threading.Thread(
        target=lambda: box.append(handle.exec(["sh", "-c", "echo x > /data/x && sync /data/x"])[0]),
        daemon=True,
    )
    t.start()
    t.join(timeout)
    return box == [0]
"""

GONE = (
    COMMON
    + """
from pytest_dcfire.errors import StartupError


def test_target_{what}_during_fire(dcfire, dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    west = dcfire_topology.service("echo@west")
    with pytest.raises(StartupError, match={expected!r}) as raised:
        with dcfire.fire("east", "west"):
            west.container.{action}
    # Everything else was restored: east's storage thawed and its network back.
    assert writes(east(dcfire_topology))
    import socket
    with socket.create_connection(east(dcfire_topology).direct_address(7000), timeout=5) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
    print("RESTORE SAID:", raised.value)


def test_next(dcfire_topology):
    pytest.fail("ran on a half-restored site")
"""
)

HELPER_KILLED = (
    COMMON
    + """
def test_helper_killed_mid_fire(dcfire, dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    client = docker.from_env()
    helper = client.containers.list(
        filters={"label": [f"{SESSION}={dcfire_topology.session_id}", f"{ROLE}=helper"]}
    )
    assert len(helper) == 1
    with dcfire.fire("east"):
        assert not writes(east(dcfire_topology), timeout=1)  # frozen
        helper[0].kill()
    assert writes(east(dcfire_topology))
    addr = east(dcfire_topology).direct_address(7000)
    import socket
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
    # ...and the next fire works with the helper started again.
    with dcfire.fire("east"):
        assert not writes(east(dcfire_topology), timeout=1)
    assert writes(east(dcfire_topology))
"""
)

SICK_TOPOLOGY = TOPOLOGY.replace(
    "healthcheck: {tcp: 7000, timeout: 30}",
    "healthcheck: {cmd: [sh, -c, 'test ! -e /data/sick || (echo sick-marker-in-logs >/proc/1/fd/1; false)'], timeout: 3}",
)

SICK = (
    COMMON
    + """
def test_site_never_recovers(dcfire, dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    with dcfire.fire("east", storage=False, mode="partition"):
        east(dcfire_topology).exec(["sh", "-c", "touch /data/sick"])


def test_next_on_the_same_site(dcfire_topology):
    pytest.fail("ran on a half-restored site")


@pytest.mark.dc_fire("west")
def test_next_fire(dcfire):
    pytest.fail("ran on a half-restored site")


def test_without_the_system():
    pass
"""
)


FULL_TOPOLOGY = TOPOLOGY.replace("sites: [east, west]", "sites: {east: {storage: 16M}, west: {}}")

FULL = (
    COMMON
    + """
def test_a_full_pool_burns_and_restores(dcfire, dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    east = dcfire_topology.service("echo@east")
    code, out = east.exec(["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=64; sync"])
    assert "No space left on device" in out, out
    with dcfire.fire("east"):
        assert not writes(east, timeout=1)
    # Restored (healthy again, reachable), still full: the data is the service's business.
    assert east.exec(["sh", "-c", "test -s /data/fill"])[0] == 0
    assert east.exec(["rm", "/data/fill"])[0] == 0
    assert writes(east)
"""
)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


def run(tmp_path: Path, tests: str, **kwargs: Any) -> tuple[Any, int]:
    inner = start_inner(tmp_path, tests, "-s", **kwargs)
    code = inner.wait(240)
    return inner, code


@pytest.mark.parametrize(
    ("what", "action", "expected"),
    [
        ("removed", "remove(force=True)", "echo@west .site west. its container was removed"),
        ("exited", "kill()", r"echo@west .site west. its container is exited .exit code 137"),
    ],
)
def test_a_container_gone_during_a_fire(
    client: docker.DockerClient, tmp_path: Path, what: str, action: str, expected: str
) -> None:
    inner, code = run(tmp_path, GONE.format(what=what, action=action, expected=expected))
    out = inner.output
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert f"test_target_{what}_during_fire PASSED" in out
    assert "RESTORE SAID: service echo@west (site west) its container" in out
    assert "test_next ERROR" in out
    assert "dcfire: not run on a half-restored system: after the fire of east, west" in out
    assert_clean(client, inner.mark.read_text(), out)


def test_the_helper_killed_mid_fire(client: docker.DockerClient, tmp_path: Path) -> None:
    inner, code = run(tmp_path, HELPER_KILLED)
    out = inner.output
    assert code == pytest.ExitCode.OK, out
    assert "the dcfire helper died" in out
    assert_clean(client, inner.mark.read_text(), out)


def test_a_site_that_never_recovers(client: docker.DockerClient, tmp_path: Path) -> None:
    inner, code = run(tmp_path, SICK, topology=SICK_TOPOLOGY)
    out = inner.output
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "test_site_never_recovers FAILED" in out
    assert "E   dcfire StartupError: service echo@east (site east) not healthy" in out
    assert "sick-marker-in-logs" in out  # its last log lines
    assert "test_next_on_the_same_site ERROR" in out
    assert "test_next_fire ERROR" in out
    assert "test_without_the_system PASSED" in out
    details = out.split("short test summary info")[0]  # summary lines depend on the width
    assert details.count("dcfire: not run on a half-restored system: after the fire of east") == 2
    assert "ran on a half-restored site" not in out
    assert "Traceback" not in out and "pytest_dcfire/" not in out  # no plugin stack
    assert_clean(client, inner.mark.read_text(), out)


def test_a_pool_that_fills_up(client: docker.DockerClient, tmp_path: Path) -> None:
    inner, code = run(tmp_path, FULL, topology=FULL_TOPOLOGY)
    out = inner.output
    assert code == pytest.ExitCode.OK, out
    assert_clean(client, inner.mark.read_text(), out)
