"""A remote engine, reached the two ways DOCKER_HOST allows: `tcp://127.0.0.1:PORT` through a
forwarder (socat) to the local engine's socket, and `ssh://USER@127.0.0.1:PORT` through an
sshd of the test's own (docker-py runs `docker system dial-stdio` over it). The plugin then
sees a remote engine (published ports, no bridge routes used, no host-side shortcut), and
every kind of fire must still burn and restore.
"""

from __future__ import annotations

import getpass
import os
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(250):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert proc.poll() is None, f"the forwarder exited with {proc.returncode}"
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def ssh_engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An sshd of our own on a free port (its own host key, one authorized key, no password,
    nothing of the machine's ssh setup touched); yields the DOCKER_HOST and the environment
    (a HOME whose ~/.ssh has the key and the known host) for the inner session."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    assert os.access(sshd, os.X_OK), "sshd is missing: scripts/setup installs openssh-server"
    try:
        import paramiko  # noqa: F401  (docker-py's ssh transport)
    except ImportError:
        pytest.fail("paramiko is missing: it is in the test extra (pip install -e '.[test]')")
    home = tmp_path / "home"
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(parents=True, mode=0o700)
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    subprocess.run([*keygen, "-f", str(tmp_path / "hostkey")], check=True)
    subprocess.run([*keygen, "-f", str(dot_ssh / "id_ed25519")], check=True)
    shutil.copy(dot_ssh / "id_ed25519.pub", tmp_path / "authorized_keys")
    port = _free_port()
    host_key = " ".join((tmp_path / "hostkey.pub").read_text().split()[:2])
    (dot_ssh / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation dir
    options = {
        "ListenAddress": "127.0.0.1",
        "HostKey": str(tmp_path / "hostkey"),
        "AuthorizedKeysFile": str(tmp_path / "authorized_keys"),
        "PidFile": str(tmp_path / "sshd.pid"),
        "StrictModes": "no",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "UsePAM": "no",
        "MaxSessions": "100",
        "MaxStartups": "100",
    }
    argv = [sshd, "-D", "-f", "/dev/null", "-p", str(port), "-E", str(tmp_path / "sshd.log")]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}", {"HOME": str(home)}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def forwarder() -> Iterator[str]:
    """socat from a free TCP port to the engine's unix socket; yields the DOCKER_HOST."""
    socat = shutil.which("socat")
    assert socat, "socat is missing: scripts/setup installs it"
    port = _free_port()
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
        _wait_listening(port, proc)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_fires_through_a_remote_engine(forwarder: str, tmp_path: Path) -> None:
    _fires_through(forwarder, {}, tmp_path)


def test_fires_through_an_engine_reached_over_ssh(
    ssh_engine: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    docker_host, env = ssh_engine
    _fires_through(docker_host, env, tmp_path / "inner")


def _fires_through(docker_host: str, env: dict[str, str], tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    inner = start_inner(tmp_path, TESTS, env={"DOCKER_HOST": docker_host, **env})
    code = inner.wait(300)
    out = inner.output
    assert code == pytest.ExitCode.OK, out
    assert "5 passed" in out
    client = docker.from_env()
    try:
        assert_clean(client, inner.mark.read_text(), out)
    finally:
        client.close()
