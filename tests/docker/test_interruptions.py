"""Interruptions on real Docker: a user's pytest run is signalled during start-up, during a
fire and during a restore, or killed by pytest-timeout, or SIGKILLed; afterwards nothing of
its session is left (containers, networks, volumes, loop devices, nft tables in any netns).
After a SIGKILL, the helper's dead-man switch uncuts and thaws at once, and removes the rest
within seconds, with no other session needed (only the faults under --dcfire-keep).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from dcfire_inner import (
    assert_clean,
    janitors_created,
    nft_tables,
    service_containers,
    session_of_pid,
    start_inner,
    wait_clean,
)

from pytest_dcfire.runtime.engine import L_SESSION

pytestmark = pytest.mark.docker

BURN = """
import os, pathlib, time
import pytest
from pytest_dcfire import dc_fire

MARK = pathlib.Path(os.environ["DCFIRE_MARK"])

{decorator}
@dc_fire("east")
def test_burn(dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    time.sleep(90)
"""

RESTORE = """
import os, pathlib

MARK = pathlib.Path(os.environ["DCFIRE_MARK"])

def test_burn_then_restore(dcfire, dcfire_topology):
    (MARK.parent / "session").write_text(dcfire_topology.session_id)
    dcfire.fire("east")
"""

SLOW_RESTORE = """
import os, pathlib, time

def pytest_dcfire_before_restore(fire, item):
    mark = pathlib.Path(os.environ["DCFIRE_MARK"])
    mark.write_text((mark.parent / "session").read_text())
    time.sleep(60)
"""

POWER_LOSS = """
import os, pathlib, time

def test_power_loss(dcfire, dcfire_topology):
    dcfire.fire("east", mode="power-loss")
    east = dcfire_topology.service("echo@east").container
    east.reload()
    assert east.status == "exited"  # powered off, its pool shut down
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    time.sleep(90)
"""

PLAIN = """
import os, pathlib

def test_system_comes_up(dcfire_topology):
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    assert len(dcfire_topology.services) == 2
"""


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


def east(client: docker.DockerClient, session: str) -> Any:  # a docker SDK Container
    found = [
        c
        for c in service_containers(client, session)
        if c.labels.get("io.github.pytest-dcfire.site") == "east"
    ]
    assert len(found) == 1, found
    found[0].reload()
    return found[0]


def writes(container: Any) -> bool:
    """A write and sync on the container's pool completes (it would block on a frozen one)."""
    box: list[int] = []
    cmd = ["sh", "-c", "echo after > /data/after && sync /data/after"]
    writer = threading.Thread(target=lambda: box.append(container.exec_run(cmd)[0]), daemon=True)
    writer.start()
    writer.join(15)
    return box == [0]


def assert_burning(client: docker.DockerClient, session: str) -> None:
    """The fire is really in place, so that 'clean afterwards' means something."""
    pid = int(east(client, session).attrs["State"]["Pid"])
    assert f"dcfire_{session}" in nft_tables(pid)


def test_sigint_during_startup(client: docker.DockerClient, tmp_path: Path) -> None:
    inner = start_inner(tmp_path, BURN.format(decorator=""))
    session = session_of_pid(client, inner.proc.pid)
    # Interrupt once the first service container exists: the system is half started.
    for _ in range(2000):
        if service_containers(client, session) or inner.proc.poll() is not None:
            break
        threading.Event().wait(0.01)
    assert not inner.mark.exists(), "too late: the test body already runs"
    inner.signal(signal.SIGINT)
    code = inner.wait()
    assert code == pytest.ExitCode.INTERRUPTED, inner.output
    assert_clean(client, session, inner.output)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_during_a_fire(client: docker.DockerClient, tmp_path: Path, signame: str) -> None:
    inner = start_inner(tmp_path, BURN.format(decorator=""))
    session = inner.wait_mark()
    assert_burning(client, session)
    inner.signal(getattr(signal, signame))
    code = inner.wait()
    assert code == pytest.ExitCode.INTERRUPTED, inner.output
    assert "Traceback" not in inner.output
    assert_clean(client, session, inner.output)


def test_sigint_during_a_restore(client: docker.DockerClient, tmp_path: Path) -> None:
    inner = start_inner(tmp_path, RESTORE, conftest=SLOW_RESTORE)
    session = inner.wait_mark()
    assert_burning(client, session)  # the restore has begun but undone nothing yet
    inner.signal(signal.SIGINT)
    code = inner.wait()
    assert code == pytest.ExitCode.INTERRUPTED, inner.output
    assert_clean(client, session, inner.output)


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_pytest_timeout_mid_fire(client: docker.DockerClient, tmp_path: Path, method: str) -> None:
    decorator = f"@pytest.mark.timeout(4, method={method!r}, func_only=True)"
    inner = start_inner(tmp_path, BURN.format(decorator=decorator))
    session = inner.wait_mark()
    assert_burning(client, session)
    code = inner.wait()
    assert code == pytest.ExitCode.TESTS_FAILED, inner.output
    assert "Timeout" in inner.output
    if method == "thread":
        assert "dcfire: pytest-timeout (4.0 s, method thread) expired" in inner.output
    assert_clean(client, session, inner.output)


def test_sigkill_mid_fire_removes_everything_with_no_new_session(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path, BURN.format(decorator=""))
    session = inner.wait_mark()
    assert_burning(client, session)
    killed_at = time.time()
    inner.signal(signal.SIGKILL)
    inner.wait()
    # The helper's agent saw its owner die: faults undone, pools detached, and its janitor
    # removed containers, volumes and networks, the helper last. No other session needed.
    seconds = wait_clean(client, session, inner.output, timeout=30.0)
    print(f"session {session} removed {seconds:.1f} s after the SIGKILL")
    assert janitors_created(client, session, killed_at) == 1, inner.output


def test_sigkill_during_a_power_loss_detaches_the_shut_down_pool(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path, POWER_LOSS)
    session = inner.wait_mark()
    killed_at = time.time()
    inner.signal(signal.SIGKILL)
    inner.wait()
    wait_clean(client, session, inner.output, timeout=30.0)
    assert janitors_created(client, session, killed_at) == 1, inner.output
    mounts = Path("/proc/self/mountinfo").read_text()
    assert session not in mounts, "a pool of the killed session is still mounted"


def test_sigkill_during_startup_then_the_next_session_reaps(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path / "killed", BURN.format(decorator=""))
    session = session_of_pid(client, inner.proc.pid)
    for _ in range(2000):  # pools made, containers being started
        if service_containers(client, session) or inner.proc.poll() is not None:
            break
        threading.Event().wait(0.01)
    assert not inner.mark.exists(), "too late: the test body already runs"
    inner.signal(signal.SIGKILL)
    inner.wait()
    successor = start_inner(tmp_path / "next", PLAIN)
    assert successor.wait() == pytest.ExitCode.OK, successor.output
    assert_clean(client, session, successor.output)
    assert_clean(client, successor.mark.read_text().strip(), successor.output)


#: Looks at the kept system from inside the interrupted run, after the plugin's cleanup:
#: once the process is gone, any session starting on this host may reap what it kept.
KEPT_CHECK = """
import json, os, pathlib, subprocess, threading
import docker

def pytest_unconfigure(config):
    mark = pathlib.Path(os.environ["DCFIRE_MARK"])
    session = mark.read_text().strip()
    client = docker.from_env()
    flt = {"label": [f"io.github.pytest-dcfire.session={session}",
                     "io.github.pytest-dcfire.role=service"]}
    kept = client.containers.list(filters=flt)
    east = [c for c in kept if c.labels["io.github.pytest-dcfire.site"] == "east"][0]
    tables = subprocess.run(
        ["nsenter", "-t", str(east.attrs["State"]["Pid"]), "-n", "nft", "list", "tables"],
        capture_output=True, text=True, check=False,
    ).stdout
    box = []
    writer = threading.Thread(target=lambda: box.append(
        east.exec_run(["sh", "-c", "echo x > /data/x && sync /data/x"])[0]), daemon=True)
    writer.start()
    writer.join(15)  # a frozen pool would block it
    code = box[0] if box else "blocked"
    (mark.parent / "kept.json").write_text(json.dumps(
        {"containers": len(kept), "cut": f"dcfire_{session}" in tables, "write": code}
    ))
"""


def test_sigint_mid_fire_with_keep_undoes_faults_and_keeps_the_system(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(
        tmp_path / "kept", BURN.format(decorator=""), "--dcfire-keep", conftest=KEPT_CHECK
    )
    session = inner.wait_mark()
    assert_burning(client, session)
    inner.signal(signal.SIGINT)
    assert inner.wait() == pytest.ExitCode.INTERRUPTED, inner.output
    assert "kept the system of session" in inner.output
    kept = json.loads((tmp_path / "kept" / "kept.json").read_text())
    # Kept, but the fire is out and the pool thawed:
    assert kept == {"containers": 2, "cut": False, "write": 0}, inner.output
    # What was kept goes with the next session (its owner is dead now).
    successor = start_inner(tmp_path / "next", PLAIN)
    assert successor.wait() == pytest.ExitCode.OK, successor.output
    assert_clean(client, session, successor.output)


def agent_running(client: docker.DockerClient, session: str) -> bool:
    flt = {"label": [f"{L_SESSION}={session}", "io.github.pytest-dcfire.role=helper"]}
    for helper in client.containers.list(filters=flt, ignore_removed=True):
        if any("dcfire_agent" in " ".join(p) for p in helper.top()["Processes"]):
            return True
    return False


def test_sigkill_mid_fire_with_keep_undoes_faults_and_keeps_the_system(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path / "kept", BURN.format(decorator=""), "--dcfire-keep")
    session = inner.wait_mark()
    assert_burning(client, session)
    killed_at = time.time()
    inner.signal(signal.SIGKILL)
    inner.wait()
    pid = int(east(client, session).attrs["State"]["Pid"])
    deadline = time.monotonic() + 30
    while agent_running(client, session) or f"dcfire_{session}" in nft_tables(pid):
        assert time.monotonic() < deadline, "the agent neither undid its cut nor ended"
        threading.Event().wait(0.1)
    # The agent is done and gone: the fire is out, the pool thawed, the system still there.
    assert writes(east(client, session)), "the east pool is still frozen"
    assert len([c for c in service_containers(client, session) if c.status == "running"]) == 2
    assert janitors_created(client, session, killed_at) == 0
    successor = start_inner(tmp_path / "next", PLAIN)  # what was kept goes with the next one
    assert successor.wait() == pytest.ExitCode.OK, successor.output
    assert_clean(client, session, successor.output)


@pytest.mark.parametrize("gap", [0.05, 0.5])
def test_three_sigints_in_a_row(client: docker.DockerClient, tmp_path: Path, gap: float) -> None:
    """A user hammering Ctrl-C: the first interrupts, the later ones are absorbed while the
    plugin undoes and removes everything (no traceback, no helper left)."""
    inner = start_inner(tmp_path, BURN.format(decorator=""))
    session = inner.wait_mark()
    assert_burning(client, session)
    for _ in range(3):
        inner.signal(signal.SIGINT)
        threading.Event().wait(gap)
    code = inner.wait()
    assert code == pytest.ExitCode.INTERRUPTED, inner.output
    assert "Traceback" not in inner.output, inner.output
    assert "Ctrl-C again" in inner.output or gap < 0.1, inner.output
    assert_clean(client, session, inner.output)
