"""--dcfire-reuse on a real engine: a second run takes the kept system over (no container
started, data carried over), and anything that differs (the topology file, an image, a
container removed by hand) means a fresh start with the reason printed; a run killed
mid-fire (SIGKILL), interrupted (Ctrl-C, SIGTERM) or timed out (pytest-timeout, both
methods) leaves a system the next run reuses whole; under pytest-xdist each worker reuses
its own copy, or all of them the shared one (`dcfire_share = session`); the TTL and
--dcfire-clean decide when a kept system goes.

Every run here is a real pytest subprocess (dcfire_inner.start_inner) on the smallest
topology, in one directory per test: the topology file's path is part of what a kept
system is keyed by.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dcfire_inner import (
    SIGNALS,
    Inner,
    assert_clean,
    leftovers,
    nft_tables,
    service_containers,
    start_inner,
)
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

#: Burns east and sleeps in the fire: what a signal or a timeout mid-fire interrupts.
BURN = """
import os, pathlib, time
import pytest
from pytest_dcfire import dc_fire

{decorator}
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


@pytest.fixture(scope="module", autouse=True)
def own_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The inner runs are a user of their own (`LOGNAME`): kept systems belong to a user,
    and `--dcfire-clean` removes all of that user's, never those of other runs here."""
    tmp_path_factory.getbasetemp()  # our own temporary directories stay where they were
    with pytest.MonkeyPatch.context() as patch:
        for name in ("LOGNAME", "USER"):
            patch.setenv(name, f"dcfire-test-{os.getpid()}")
        yield


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
    killed = start_burning(tmp_path, BURN.format(decorator=""), topology)
    assert killed.wait_mark() == session  # the reusing run burns the kept system
    assert_burning(client, session)
    killed.signal(signal.SIGKILL)
    killed.wait()
    assert_reused_whole(client, tmp_path, session, topology)


def start_burning(path: Path, tests: str, topology: str, *args: str) -> Inner:
    """A reusing run that burns east (the previous run's mark removed first, so that the
    mark says this run is in its fire)."""
    (path / "burning.mark").unlink(missing_ok=True)
    return start_inner(path, tests, "--dcfire-reuse", *args, topology=topology)


def assert_burning(client: docker.DockerClient, session: str) -> None:
    """The fire is really in place (east's netns holds the session's table), so that
    "whole afterwards" means something."""
    assert any(f"dcfire_{session}" in tables for tables in cut_tables(client, session))


def cut_tables(client: docker.DockerClient, session: str) -> list[str]:
    found = []
    for container in service_containers(client, session):
        container.reload()
        found.append(nft_tables(int(container.attrs["State"]["Pid"])))
    return found


def assert_reused_whole(
    client: docker.DockerClient, path: Path, session: str, topology: str
) -> None:
    """The next reusing run takes `session` over, and its first test finds east whole:
    it answers, and its pool takes a synced write (a frozen one would block it)."""
    after = run(path, WHOLE, topology=topology)
    assert f"reusing the system of session {session}" in after, after
    assert session_of(after) == session
    assert not any(f"dcfire_{session}" in tables for tables in cut_tables(client, session))


@pytest.fixture(scope="module")
def kept_whole(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[str]]]:
    """One kept system with storage (the first session in the list) that the interruption
    tests take turns to burn and reuse; every session they made is removed at the end."""
    path = tmp_path_factory.mktemp("interrupted")
    sessions = [session_of(run(path, COUNT, topology=WITH_VOLUMES))]
    yield path, sessions
    from pytest_dcfire.runtime.reaper import reap_dead_sessions

    reap_dead_sessions(client, sessions=sessions)


WITH_VOLUMES = echo_topology(volumes=True)
INTERRUPTIONS = {
    "SIGINT": "",
    "SIGTERM": "",
    "timeout-signal": "@pytest.mark.timeout(3, method='signal', func_only=True)",
    "timeout-thread": "@pytest.mark.timeout(3, method='thread', func_only=True)",
}


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_an_interrupted_reused_run_leaves_a_system_the_next_run_reuses_whole(
    client: docker.DockerClient, kept_whole: tuple[Path, list[str]], interruption: str
) -> None:
    path, sessions = kept_whole
    session = sessions[0]
    burning = start_burning(path, BURN.format(decorator=INTERRUPTIONS[interruption]), WITH_VOLUMES)
    assert burning.wait_mark() == session, burning.output  # it burns the kept system
    assert_burning(client, session)
    if interruption in SIGNALS:
        burning.signal(SIGNALS[interruption])
    code = burning.wait(120)
    expected = pytest.ExitCode.INTERRUPTED if interruption in SIGNALS else 1
    assert code == expected, burning.output
    assert f"kept the system of session {session} for the next run" in burning.output
    if interruption in SIGNALS:
        assert "Traceback" not in burning.output
    assert_reused_whole(client, path, session, WITH_VOLUMES)


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


#: One test per xdist worker (`--dist loadgroup`); each writes the session it runs on.
PER_WORKER = """
import os, pathlib
import pytest

def note(topology):
    where = pathlib.Path(os.environ["DCFIRE_MARK"]).parent
    worker = os.environ["PYTEST_XDIST_WORKER"]
    (where / f"session-{worker}").write_text(topology.session_id)
    assert topology.service("echo@east").exec(["true"])[0] == 0

@pytest.mark.xdist_group("a")
def test_a(dcfire_topology):
    note(dcfire_topology)

@pytest.mark.xdist_group("b")
def test_b(dcfire_topology):
    note(dcfire_topology)
"""


def xdist_run(path: Path, ini: str) -> tuple[dict[str, str], int]:
    """A reusing run with two workers; (worker -> the session its tests ran on, pid)."""
    for old in path.glob("session-gw*"):
        old.unlink()
    inner = start_inner(
        path,
        PER_WORKER,
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--dcfire-reuse",
        ini=ini,
        topology=TOPOLOGY,
    )
    assert inner.wait(240) == pytest.ExitCode.OK, inner.output
    seen = {f.name.removeprefix("session-"): f.read_text() for f in path.glob("session-gw*")}
    assert len(seen) == 2, (seen, inner.output)
    return seen, inner.proc.pid


@pytest.mark.parametrize("share", ["worker", "session"])
def test_under_xdist_a_second_run_reuses_what_the_first_kept(
    client: docker.DockerClient, tmp_path: Path, kept: list[str], share: str
) -> None:
    """`dcfire_share = worker`: each worker takes its own copy over again (keyed by its
    worker id); `session`: the controller takes the shared copy over and the workers attach."""
    ini = f"dcfire_share = {share}\n"
    first, _ = xdist_run(tmp_path, ini)
    kept.extend(set(first.values()))
    if share == "worker":
        assert first["gw0"] != first["gw1"], first
    else:
        assert first["gw0"] == first["gw1"], first
    since = time.time()
    second, pid = xdist_run(tmp_path, ini)
    until = time.time()
    kept.extend(set(second.values()))
    assert second == first  # each worker on the copy it had
    for session in set(first.values()):
        started = containers_started(client, since, until, session, pid)
        assert not started, f"the reusing run started containers of {session}: {started}"
        assert any(r.session == session for r in records(client))
