"""pytest-xdist: each worker owns its own copy of the topology (own session, names, labels,
network and subnet, pools, helper), and a worker's fire never touches another's containers.

An inner run with `-n 2` has two tests, each pinned to its own worker (`--dist loadgroup`),
burning different sites at the same moment (a file barrier): while both burn, each checks the
other worker's copy of the site it burns itself, which must be reachable, writable and free
of either session's nft table.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean, start_inner

pytestmark = pytest.mark.docker

TESTS = """
import json, os, pathlib, socket, subprocess, threading, time
import docker
import pytest
from pytest_dcfire import dc_fire

DIR = pathlib.Path(os.environ["DCFIRE_MARK"]).parent
L = "io.github.pytest-dcfire."


def barrier(name, me, other, timeout=120):
    (DIR / f"{name}-{me}").write_text("x")
    deadline = time.monotonic() + timeout
    while not (DIR / f"{name}-{other}").exists():
        assert time.monotonic() < deadline, f"{other} never reached {name}"
        time.sleep(0.05)


def echo(host, timeout=2.0):
    try:
        with socket.create_connection((host, 7000), timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(10) == b"ping"
    except OSError:
        return False


def writes(container, timeout=15):
    box = []
    t = threading.Thread(
        target=lambda: box.append(container.exec_run(["sh", "-c", "echo x > /data/x && sync /data/x"])[0]),
        daemon=True,
    )
    t.start()
    t.join(timeout)
    return box == [0]


def tables(container):
    pid = str(container.attrs["State"]["Pid"])
    return subprocess.run(["nsenter", "-t", pid, "-n", "nft", "list", "tables"],
                          capture_output=True, text=True, check=False).stdout


def burn_and_check_the_other(topology, site, me, other):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    session = topology.session_id
    mine = topology.service(f"echo@{site}")
    info = {"worker": worker, "session": session, "subnet": str(topology.subnet),
            "network": topology.network.name, "containers": [h.container.name for h in topology]}
    (DIR / f"info-{me}.json").write_text(json.dumps(info))
    barrier("burning", me, other)
    theirs_info = json.loads((DIR / f"info-{other}.json").read_text())
    assert theirs_info["worker"] != worker and theirs_info["session"] != session
    assert theirs_info["subnet"] != info["subnet"] and theirs_info["network"] != info["network"]
    assert not set(theirs_info["containers"]) & set(info["containers"])
    client = docker.from_env()
    theirs = client.containers.list(filters={"label": [
        f"{L}session={theirs_info['session']}", f"{L}site={site}", f"{L}role=service"]})
    assert len(theirs) == 1 and theirs[0].labels[L + "worker"] == theirs_info["worker"]
    ip = list(theirs[0].attrs["NetworkSettings"]["Networks"].values())[0]["IPAddress"]
    # My site burns in my copy only:
    assert not echo(mine.ip, timeout=1.0)
    assert echo(ip), "the other worker's copy of my site was cut"
    assert writes(theirs[0]), "the other worker's copy of my site was frozen"
    assert f"dcfire_{session}" not in tables(theirs[0])
    assert f"dcfire_{theirs_info['session']}" not in tables(theirs[0])
    barrier("checked", me, other)
    (DIR / "burning.mark").write_text(session)


@pytest.mark.xdist_group("a")
@dc_fire("east")
def test_a_burns_east(dcfire_topology):
    burn_and_check_the_other(dcfire_topology, "east", "a", "b")


@pytest.mark.xdist_group("b")
@dc_fire("west")
def test_b_burns_west(dcfire_topology):
    burn_and_check_the_other(dcfire_topology, "west", "b", "a")
"""


def test_two_workers_never_touch_each_other(tmp_path: Path) -> None:
    inner = start_inner(tmp_path, TESTS, "-n", "2", "--dist", "loadgroup")
    code = inner.wait(300)
    out = inner.output
    assert code == pytest.ExitCode.OK, out
    assert "2 passed" in out
    # The workers' terminals are not shown: the controller prints each worker's fire table.
    fires = [line for line in out.splitlines() if "dcfire: fires (gw" in line]
    assert len(fires) == 2, out
    assert "test_a_burns_east" in out and "test_b_burns_west" in out
    client = docker.from_env()
    try:
        for me in ("a", "b"):
            info = json.loads((tmp_path / f"info-{me}.json").read_text())
            assert_clean(client, info["session"], out)
    finally:
        client.close()
