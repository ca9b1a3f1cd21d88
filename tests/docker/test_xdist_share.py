"""pytest-xdist with `dcfire_share = session`: one copy of the topology for both workers.

One inner run with `-n 2 --dist loadfile` (file a on one worker, file b on the other):
each file burns east then west (one of them a power loss) and runs topology-only tests
between the fires, recording the window of every test body. Both workers must see the same containers (one session
label), no burning window may overlap any other test's window of the other worker, and
the topology-only tests find both sites reachable (every fire was restored). File a ends by
SIGKILLing its own worker in the middle of a fire: while file b waits, this test checks
that the dead worker's agent restored the site and removed its own helper (and nothing of
the shared copy), then the run ends and nothing of the shared session, or of the workers'
helpers, is left.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path

import docker
import pytest
from dcfire_inner import TOPOLOGY, assert_clean, start_inner, wait_clean

from pytest_dcfire.runtime.engine import L_SHARED

pytestmark = pytest.mark.docker

COMMON = """
import json, os, pathlib, signal, socket, time
import pytest
from pytest_dcfire import dc_fire

DIR = pathlib.Path(os.environ["DCFIRE_MARK"]).parent
L = "io.github.pytest-dcfire."


def echo(addr, timeout=1.0):
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(10) == b"ping"
    except OSError:
        return False


def record(name, kind, topology, start):
    (DIR / f"w-{name}.json").write_text(json.dumps({
        "kind": kind, "start": start, "end": time.time(),
        "worker": os.environ["PYTEST_XDIST_WORKER"],
        "ids": {h.name: h.container.id for h in topology},
        "labels": sorted({h.container.labels[L + "session"] for h in topology}),
        "helper": topology.engine.session.id,
    }))


def burn(name, site, topology):
    start = time.time()
    assert not echo(topology.service(f"echo@{site}").direct_address(7000))
    time.sleep(0.6)
    record(name, "burn", topology, start)


def look(name, topology):
    start = time.time()
    for h in topology:  # every fire before this one was restored
        assert echo(h.direct_address(7000)), h.name
        assert echo(h.address(7000)), f"{h.name} through the controller's proxy"
    time.sleep(0.4)
    record(name, "look", topology, start)


"""

TESTS_A = (
    COMMON
    + """
@dc_fire("east")
def test_a1_burn_east(dcfire_topology):
    burn("a1", "east", dcfire_topology)


def test_a2_look(dcfire_topology):
    look("a2", dcfire_topology)


def test_a3_burn_west(dcfire, dcfire_topology):
    # power-loss: SIGKILLed by this worker's helper, started again through the engine.
    with dcfire.fire("west", mode="power-loss"):
        burn("a3", "west", dcfire_topology)
        west = dcfire_topology.service("echo@west").container
        west.reload()
        assert west.status == "exited"


def test_a4_look(dcfire_topology):
    look("a4", dcfire_topology)


@dc_fire("east")
def test_a5_killed_mid_fire(dcfire_topology):
    if (DIR / "killed.json").exists():
        pytest.skip("xdist runs a crashed test's file again: killed once already")
    h = dcfire_topology.service("echo@east")
    assert not echo(h.direct_address(7000))
    (DIR / "killed.json").write_text(json.dumps({
        "ip": h.ip, "container": h.container.id, "helper": dcfire_topology.engine.session.id,
    }))
    os.kill(os.getpid(), signal.SIGKILL)
"""
)

TESTS_B = (
    COMMON
    + """
@dc_fire("west")
def test_b1_burn_west(dcfire_topology):
    burn("b1", "west", dcfire_topology)


def test_b2_look(dcfire_topology):
    look("b2", dcfire_topology)


@dc_fire("east")
def test_b3_burn_east(dcfire_topology):
    burn("b3", "east", dcfire_topology)


def test_b4_look(dcfire_topology):
    look("b4", dcfire_topology)


def test_b5_wait_for_the_outer_check():
    # No dcfire fixture, so no lock: the shared copy stays up while the outer test looks.
    deadline = time.monotonic() + 90
    while not (DIR / "checked").exists():
        assert time.monotonic() < deadline, "the outer test never checked"
        time.sleep(0.05)
"""
)


def reachable(ip: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, 7000), timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(10) == b"ping"
    except OSError:
        return False


def writes(container: object, timeout: float = 10.0) -> bool:
    box: list[int] = []
    cmd = ["sh", "-c", "echo x > /data/after-kill && sync /data/after-kill"]
    thread = threading.Thread(
        target=lambda: box.append(container.exec_run(cmd)[0]),  # type: ignore[attr-defined]
        daemon=True,
    )
    thread.start()
    thread.join(timeout)
    return box == [0]


def test_one_shared_copy_fires_serialised_and_a_killed_worker_restored(tmp_path: Path) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test_b.py").write_text(TESTS_B)
    # loadfile: each file on one worker (xdist_group does not group under pytest 9 here).
    inner = start_inner(
        tmp_path, TESTS_A, "-n", "2", "--dist", "loadfile", ini="dcfire_share = session\n"
    )
    client = docker.from_env()
    try:
        killed_file = tmp_path / "killed.json"
        deadline = time.monotonic() + 120
        while not killed_file.exists():
            assert inner.proc.poll() is None, inner.output
            assert time.monotonic() < deadline, inner.output
            time.sleep(0.05)
        time.sleep(0.2)
        killed = json.loads(killed_file.read_text())
        # The dead worker's helper agent undid its cut and thawed the pool by itself.
        back = time.monotonic() + 15
        while not reachable(killed["ip"]) and time.monotonic() < back:
            time.sleep(0.1)
        assert reachable(killed["ip"]), "the killed worker's fire was not undone"
        assert writes(client.containers.get(killed["container"])), "the pool stayed frozen"
        # Then it removed its own session (its helper), never the shared copy it used.
        wait_clean(client, killed["helper"], inner.output, timeout=30.0)
        assert client.containers.get(killed["container"]).status == "running"
        (tmp_path / "checked").write_text("x")

        code = inner.wait(120)
        out = inner.output
        assert code == pytest.ExitCode.TESTS_FAILED, out
        assert "crashed while running" in out and "test_a5_killed_mid_fire" in out, out
        assert "9 passed" in out and "1 failed" in out, out

        runs = {p.stem[2:]: json.loads(p.read_text()) for p in sorted(tmp_path.glob("w-*.json"))}
        assert sorted(runs) == ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"], out
        assert {r["worker"] for r in runs.values()} == {"gw0", "gw1"}, runs
        # One copy: the same containers in both workers, one session label on them all...
        assert len({json.dumps(r["ids"], sort_keys=True) for r in runs.values()}) == 1, runs
        sessions = {label for r in runs.values() for label in r["labels"]}
        assert len(sessions) == 1, runs
        (shared,) = sessions
        # ...and a helper per worker, each a session of its own.
        helpers = {r["worker"]: r["helper"] for r in runs.values()}
        assert len(set(helpers.values())) == 2 and shared not in helpers.values(), helpers
        # A burning window overlaps no window of the other worker (burn or topology-only).
        for (na, a), (nb, b) in itertools.combinations(runs.items(), 2):
            if a["worker"] == b["worker"] or "burn" not in (a["kind"], b["kind"]):
                continue
            overlap = min(a["end"], b["end"]) - max(a["start"], b["start"])
            assert overlap <= 0, f"{na} and {nb} overlap by {overlap:.3f} s: {runs}"
        assert "dcfire_lock_wait_s" not in out  # junit only, not in the terminal
        for session in (shared, killed["helper"], *helpers.values()):
            assert_clean(client, session, out)
        left = client.containers.list(
            all=True, filters={"label": f"{L_SHARED}={shared}"}, ignore_removed=True
        )
        assert not left, f"workers' helpers left: {[c.name for c in left]}\n{out}"
    finally:
        if inner.proc.poll() is None:
            inner.proc.kill()
        client.close()


SICK_TOPOLOGY = TOPOLOGY.replace(
    "healthcheck: {tcp: 7000, timeout: 30}",
    "healthcheck: {cmd: [sh, -c, 'test ! -e /data/sick'], timeout: 3}",
)
assert SICK_TOPOLOGY != TOPOLOGY

BREAKS = """
import os, pathlib

DIR = pathlib.Path(os.environ["DCFIRE_MARK"]).parent


def test_a_fire_that_breaks_east(dcfire, dcfire_topology):
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    with dcfire.fire("east", storage=False, mode="partition"):
        dcfire_topology.service("echo@east").exec(["sh", "-c", "touch /data/sick"])
        (DIR / "a-burning").write_text("x")
"""

WAITS = """
import os, pathlib, time

DIR = pathlib.Path(os.environ["DCFIRE_MARK"]).parent


def test_b1_waits_for_the_fire():  # no dcfire fixture: runs beside the fire
    deadline = time.monotonic() + 90
    while not (DIR / "a-burning").exists():
        assert time.monotonic() < deadline, "the other worker never burned"
        time.sleep(0.05)


def test_b2_on_the_copy_the_other_worker_broke(dcfire_topology):
    raise AssertionError("ran on a half-restored shared copy")
"""


def test_a_copy_one_worker_broke_is_broken_for_every_worker(tmp_path: Path) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test_b.py").write_text(WAITS)
    inner = start_inner(
        tmp_path,
        BREAKS,
        "-n",
        "2",
        "--dist",
        "loadfile",
        ini="dcfire_share = session\n",
        topology=SICK_TOPOLOGY,
    )
    code = inner.wait(180)
    out = inner.output
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "FAILED test_inner.py::test_a_fire_that_breaks_east" in out, out
    assert "PASSED test_b.py::test_b1_waits_for_the_fire" in out, out
    assert "ERROR test_b.py::test_b2_on_the_copy_the_other_worker_broke" in out, out
    assert "ran on a half-restored shared copy" not in out, out
    details = out.split("short test summary info")[0]
    assert "dcfire: not run on a half-restored system: after the fire of east" in details, out
    client = docker.from_env()
    try:
        assert_clean(client, inner.mark.read_text().strip(), out)
    finally:
        client.close()
