"""``python -m pytest_dcfire.toxiproxy`` as a subprocess: serves, logs changes, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from toxiproxy_helpers import Api, Upstream, connect, round_trip

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_dcfire.toxiproxy", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server never listened")


@pytest.fixture
def standalone() -> Iterator[tuple[subprocess.Popen[str], Api]]:
    port = _free_port()
    proc = _start("--host", "127.0.0.1", "--port", str(port))
    try:
        _wait_listening(proc, port)
        yield proc, Api("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_logs_and_stops_on_signal(
    standalone: tuple[subprocess.Popen[str], Api], echo: Upstream, signum: signal.Signals
) -> None:
    proc, api = standalone
    assert api("GET", "/version").status == 200
    proxy = api.create("echo", echo.port)
    api.toxic("echo", type="latency", attributes={"latency": 10})
    with connect(proxy) as sock:
        assert round_trip(sock) >= 0.009
    api.delete("/proxies/echo")
    proc.send_signal(signum)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    log = proc.stderr.read()
    changes = [line for line in log.splitlines() if "INFO" in line]
    assert any("listening on http://127.0.0.1:" in line for line in changes)
    assert any("created proxy echo" in line for line in changes)
    assert any("added toxic latency_downstream to proxy echo" in line for line in changes)
    assert any("deleted proxy echo" in line for line in changes)
    assert "Traceback" not in log


def test_config_file_populates(tmp_path: Path, echo: Upstream) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps([{"name": "cfg", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"}])
    )
    port = _free_port()
    proc = _start("--host", "127.0.0.1", "--port", str(port), "--config", str(config))
    try:
        _wait_listening(proc, port)
        api = Api("127.0.0.1", port)
        deadline = time.monotonic() + 5
        while "cfg" not in api("GET", "/proxies").json():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with connect(api("GET", "/proxies/cfg").json()) as sock:
            round_trip(sock)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stderr:
            proc.stderr.close()


def test_busy_port_exits_with_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        proc = _start("--host", "127.0.0.1", "--port", str(busy.getsockname()[1]))
        assert proc.wait(15) == 1
    assert proc.stderr is not None
    assert "address already in use" in proc.stderr.read()
    proc.stderr.close()
