"""--dcfire-reuse on a real engine: a second run takes the kept system over (no container
started, data carried over), and anything that differs (the topology file, an image, a
container removed by hand) means a fresh start with the reason printed; a run killed
mid-fire leaves a system the next run reuses whole; the TTL and --dcfire-clean decide when a
kept system goes.

Every run here is a real pytest subprocess (dcfire_inner.start_inner) on the smallest
topology, in one directory per test: the topology file's path is part of what a kept
system is keyed by.
"""

from __future__ import annotations

import contextlib
import io
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean, leftovers, nft_tables, service_containers, start_inner
from inner_session import echo_topology

from pytest_dcfire.runtime.engine import L_PID, L_SESSION
from pytest_dcfire.runtime.reuse import L_KEY, records

pytestmark = pytest.mark.docker

TOPOLOGY = echo_topology(volumes=False)

#: Writes the session id to the mark, and proves the data of earlier runs is still there.
COUNT = """
import os, pathlib

def test_counts_runs(dcfire_topology):
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    east = dcfire_topology.service("echo@east")
    code, out = east.exec(["sh", "-c", "echo run >> /tmp/runs; wc -l < /tmp/runs"])
    assert code == 0
    print(f"RUNS={out.strip()}")
"""

#: Burns east and sleeps in the fire: what a SIGKILL mid-fire interrupts.
BURN = """
import os, pathlib, time
from pytest_dcfire import dc_fire

@dc_fire("east")
def test_burn(dcfire_topology):
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    time.sleep(90)
"""

#: The site must be whole before the first test does anything: network and storage.
WHOLE = """
import os, pathlib, socket

def test_site_is_whole(dcfire_topology):
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    east = dcfire_topology.service("echo@east")
    with socket.create_connection(east.direct_address(7000), timeout=2) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
    code, _ = east.exec(["sh", "-c", "echo ok > /data/after && sync /data/after"])
    assert code == 0
"""


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def kept(client: docker.DockerClient) -> Iterator[list[str]]:
    """Sessions the test kept; whatever is left of them is removed afterwards."""
    sessions: list[str] = []
    yield sessions
    from pytest_dcfire.runtime.reaper import reap_dead_sessions

    reap_dead_sessions(client, sessions=sessions)


def run(path: Path, tests: str, *args: str, topology: str = TOPOLOGY, ini: str = "") -> str:
    """One reusing run to its end; returns its output (it must pass)."""
    return run_pid(path, tests, *args, topology=topology, ini=ini)[0]


def run_pid(
    path: Path, tests: str, *args: str, topology: str = TOPOLOGY, ini: str = ""
) -> tuple[str, int]:
    inner = start_inner(path, tests, "-s", "--dcfire-reuse", *args, topology=topology, ini=ini)
    code = inner.wait(240)
    assert code == pytest.ExitCode.OK, inner.output
    return inner.output, inner.proc.pid


def session_of(output: str) -> str:
    line = next(line for line in output.splitlines() if "for the next run" in line)
    return line.split("session ", 1)[1].split()[0]


def containers_started(
    client: docker.DockerClient, since: float, until: float, session: str, pid: int
) -> list[str]:
    """Containers created or started on the engine in that window that are of `session` or
    made by the process `pid`, as `action name` (other sessions share the engine).

    The engine is asked in whole seconds, so its answer starts up to a second early: events
    before `since` (the previous run starting its containers) are dropped by their
    nanosecond time."""
    events = client.events(
        since=int(since),
        until=int(until) + 1,
        decode=True,
        filters={"type": "container", "event": ["create", "start"]},
    )
    found = []
    for event in events:
        if not since * 1e9 <= event["timeNano"] <= until * 1e9:
            continue
        labels = event["Actor"]["Attributes"]
        if labels.get(L_SESSION) == session or labels.get(L_PID) == str(pid):
            found.append(f"{event['Action']} {labels.get('name')}")
    return found


def test_a_second_run_reuses_the_system_and_starts_no_container(
    client: docker.DockerClient, tmp_path: Path, kept: list[str]
) -> None:
    first = run(tmp_path, COUNT)
    session = session_of(first)
    kept.append(session)
    assert "RUNS=1" in first
    since = time.time()
    second, pid = run_pid(tmp_path, COUNT)
    until = time.time()
    assert f"reusing the system of session {session}" in second, second
    assert "starting wave" not in second
    assert "RUNS=2" in second  # the data of the first run carried over
    started = containers_started(client, since, until, session, pid)
    assert not started, f"the reusing run started containers: {started}"


@pytest.fixture
def image(client: docker.DockerClient) -> Iterator[str]:
    """A tiny image of our own (a label on debian:bookworm-slim), rebuilt by `rebuild`."""
    tag = f"dcfire-reuse-test:{time.time_ns()}"
    rebuild(client, tag, "1")
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag, force=True)


def rebuild(client: docker.DockerClient, tag: str, version: str) -> None:
    dockerfile = f"FROM debian:bookworm-slim\nLABEL dcfire.test.version={version}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)


@pytest.mark.parametrize("change", ["topology file", "image", "container removed"])
def test_what_differs_means_a_fresh_start_with_the_reason(
    client: docker.DockerClient, tmp_path: Path, kept: list[str], image: str, change: str
) -> None:
    topology = TOPOLOGY.replace("debian:bookworm-slim", image)
    first = session_of(run(tmp_path, COUNT, topology=topology))
    kept.append(first)
    if change == "topology file":
        topology += "# edited\n"
        reason = "the topology file changed"
    elif change == "image":
        rebuild(client, image, "2")
        reason = "the image of service echo changed (rebuilt)"
    else:
        east = [c for c in service_containers(client, first) if "east" in c.name]
        east[0].remove(force=True)
        reason = "the container of echo@east is gone (removed by hand?)"
    second = run(tmp_path, COUNT, topology=topology)
    kept.append(session_of(second))
    assert f"not reusing the kept system of session {first}: {reason}; starting a fresh one" in (
        second
    ), second
    assert "RUNS=1" in second  # a fresh system: no data of the first run
    assert session_of(second) != first
    assert_clean(client, first, second)  # the unfit one was removed


def test_a_run_killed_mid_fire_leaves_a_system_the_next_run_reuses_whole(
    client: docker.DockerClient, tmp_path: Path, kept: list[str]
) -> None:
    topology = echo_topology(volumes=True)
    session = session_of(run(tmp_path, COUNT, topology=topology))
    kept.append(session)
    killed = start_inner(tmp_path, BURN, "--dcfire-reuse", topology=topology)
    assert killed.wait_mark() == session  # the reusing run burns the kept system
    killed.signal(signal.SIGKILL)
    killed.wait()
    after = run(tmp_path, WHOLE, topology=topology)
    assert f"reusing the system of session {session}" in after, after
    assert session_of(after) == session
    for container in service_containers(client, session):
        container.reload()
        assert f"dcfire_{session}" not in nft_tables(int(container.attrs["State"]["Pid"]))


def test_an_expired_reusable_system_is_reaped_and_a_young_one_is_not(
    client: docker.DockerClient, tmp_path: Path, kept: list[str]
) -> None:
    young = session_of(run(tmp_path / "young", COUNT, ini="dcfire_reuse_ttl = 1h\n"))
    kept.append(young)
    old_output = run(tmp_path / "old", COUNT, ini="dcfire_reuse_ttl = 2s\n")
    old = session_of(old_output)
    kept.append(old)
    time.sleep(3)
    other = start_inner(tmp_path / "other", COUNT)  # a plain session: its start-up reaps
    assert other.wait(240) == pytest.ExitCode.OK, other.output
    assert_clean(client, old, other.output)
    assert service_containers(client, young), leftovers(client, young)
    assert any(r.session == young for r in records(client))


def test_dcfire_clean_removes_every_reusable_system_and_runs_no_test(
    client: docker.DockerClient, tmp_path: Path, kept: list[str]
) -> None:
    session = session_of(run(tmp_path, COUNT))
    kept.append(session)
    key = next(r.key for r in records(client) if r.session == session)
    cleaner = start_inner(tmp_path, COUNT, "--dcfire-clean")
    assert cleaner.wait(120) == pytest.ExitCode.OK, cleaner.output
    assert "removed" in cleaner.output and "reusable system(s)" in cleaner.output
    assert "test_counts_runs" not in cleaner.output  # no test ran
    assert_clean(client, session, cleaner.output)
    assert not records(client, **{L_KEY: key})


RESET = """
import socket

def test_reset_makes_a_service_afresh(dcfire_topology):
    east = dcfire_topology.service("echo@east")
    assert east.exec(["sh", "-c", "echo old > /data/f"])[0] == 0
    [fresh] = dcfire_topology.reset("echo@east")
    assert fresh.container.id != east.container.id
    assert dcfire_topology.service("echo@east") is fresh and fresh.ip == east.ip
    assert fresh.exec(["sh", "-c", "cat /data/f 2>/dev/null || echo empty"])[1].strip() == "empty"
    with socket.create_connection(fresh.address(7000), timeout=5) as s:  # through its proxy
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    west = dcfire_topology.service("echo@west")
    assert west.exec(["sh", "-c", "test -d /data"])[0] == 0  # the other site untouched
"""


def test_reset_recreates_the_containers_and_volumes_of_a_service(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path, RESET, topology=echo_topology(volumes=True))
    assert inner.wait(240) == pytest.ExitCode.OK, inner.output
