"""A remote engine: DOCKER_HOST=tcp://127.0.0.1:PORT through a forwarder (socat) to the local
engine's socket. The plugin then sees a remote engine (published ports, no bridge routes
used, no host-side shortcut), and every kind of fire must still burn and restore.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean, start_inner

pytestmark = pytest.mark.docker

TESTS = """
import os, pathlib, socket, threading
import pytest
from pytest_dcfire import dc_fire

MARK = pathlib.Path(os.environ["DCFIRE_MARK"])


def echo(handle, timeout=2.0):
    try:
        with socket.create_connection(handle.direct_address(7000), timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(10) == b"ping"
    except OSError:
        return False


def writes(handle, timeout=15):
    box = []
    t = threading.Thread(
        target=lambda: box.append(handle.exec(["sh", "-c", "echo x > /data/x && sync /data/x"])[0]),
        daemon=True,
    )
    t.start()
    t.join(timeout)
    return box == [0]


def test_the_engine_is_remote(dcfire_topology):
    MARK.write_text(dcfire_topology.session_id)
    assert dcfire_topology.engine.local is False
    host, port = dcfire_topology.service("echo@east").direct_address(7000)
    assert host == "127.0.0.1" and port != 7000  # a published port, not the bridge address
    assert echo(dcfire_topology.service("echo@east"))


@dc_fire("east")
def test_fire_cuts_network_and_freezes_storage(dcfire_topology):
    east, west = dcfire_topology.service("echo@east"), dcfire_topology.service("echo@west")
    assert not echo(east, timeout=1.0)
    assert not writes(east, timeout=1.0)
    assert echo(west) and writes(west)


@dc_fire("east", mode="partition")
def test_partition(dcfire_topology):
    east = dcfire_topology.service("echo@east")
    assert not echo(east, timeout=1.0)
    assert writes(east)


@dc_fire("east", mode="power-loss")
def test_power_loss(dcfire_topology):
    east = dcfire_topology.service("echo@east")
    east.container.reload()
    assert east.container.status == "exited"


def test_everything_restored(dcfire_topology):
    for handle in dcfire_topology:
        assert echo(handle), handle.name
        assert writes(handle), handle.name
"""


@pytest.fixture
def forwarder() -> Iterator[str]:
    """socat from a free TCP port to the engine's unix socket; yields the DOCKER_HOST."""
    socat = shutil.which("socat")
    assert socat, "socat is missing: scripts/setup installs it"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            socat,
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            "UNIX-CONNECT:/var/run/docker.sock",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_fires_through_a_remote_engine(forwarder: str, tmp_path: Path) -> None:
    inner = start_inner(tmp_path, TESTS, env={"DOCKER_HOST": forwarder})
    code = inner.wait(300)
    out = inner.output
    assert code == pytest.ExitCode.OK, out
    assert "5 passed" in out
    client = docker.from_env()
    try:
        assert_clean(client, inner.mark.read_text(), out)
    finally:
        client.close()
