"""Benchmark: what the embedded Toxiproxy adds to a round trip, and how fast it streams.

Run ``python benchmarks/bench_toxiproxy.py``. Every row talks to the same upstream server
(a separate Python process: echo for round trips, a byte source for throughput), in the same
run: directly, through the embedded server in this process (how the plugin uses it), through
the same server standalone (``python -m pytest_dcfire.toxiproxy``), and through socat. Pass
``--toxiproxy-server PATH`` to add a row for a real ``toxiproxy-server`` binary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pytest_dcfire.toxiproxy import EmbeddedToxiproxy  # noqa: E402

# The upstream: a thread per connection; the first byte picks echo ("E") or source ("S" +
# 8-byte length: send that many bytes, then close).
UPSTREAM_CODE = r"""
import socket, struct, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
print(listener.getsockname()[1], flush=True)
block = memoryview(b"x" * (1 << 20))
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mode = conn.recv(1)
    if mode == b"E":
        buf = bytearray(65536)
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            conn.sendall(memoryview(buf)[:n])
    elif mode == b"S":
        size = struct.unpack("!Q", conn.recv(8, socket.MSG_WAITALL))[0]
        while size > 0:
            n = min(size, len(block))
            conn.sendall(block[:n])
            size -= n
    conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@dataclass
class Row:
    """One line of the table: a path from the client to the upstream, measured."""

    name: str
    p50_us: float | None = None
    p99_us: float | None = None
    mb_s: float | None = None
    note: str = ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips(port: int, iterations: int, size: int) -> list[int]:
    """Nanoseconds of each send ``size`` bytes / receive them back (after a warm-up)."""
    payload = b"r" * size
    buf = bytearray(size)
    view = memoryview(buf)
    samples: list[int] = []
    with _connect(port) as sock:
        sock.sendall(b"E")
        for i in range(iterations + 50):
            start = time.perf_counter_ns()
            sock.sendall(payload)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:])
                if not n:
                    raise RuntimeError("upstream closed during the round trips")
                got += n
            if i >= 50:
                samples.append(time.perf_counter_ns() - start)
    return samples


def _percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] / 1000


def throughput(port: int, total: int) -> float:
    """MB/s (10**6 bytes) of ``total`` bytes streamed from the upstream to us."""
    buf = bytearray(1 << 20)
    with _connect(port) as sock:
        start = time.perf_counter()
        sock.sendall(b"S" + total.to_bytes(8, "big"))
        got = 0
        while True:
            n = sock.recv_into(buf)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - start
    if got != total:
        raise RuntimeError(f"received {got} bytes of {total}")
    return total / elapsed / 1e6


def _api(url: str, method: str, path: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _create_proxy(url: str, upstream: int) -> int:
    proxy = _api(
        url,
        "POST",
        "/proxies",
        {
            "name": "bench",
            "listen": "127.0.0.1:0",
            "upstream": f"127.0.0.1:{upstream}",
        },
    )
    return int(str(proxy["listen"]).rsplit(":", 1)[1])


@contextlib.contextmanager
def _process(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def embedded(upstream: int) -> Iterator[int]:
    with EmbeddedToxiproxy() as server:
        yield _create_proxy(server.url, upstream)


@contextlib.contextmanager
def standalone(upstream: int) -> Iterator[int]:
    api = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [
        sys.executable,
        "-m",
        "pytest_dcfire.toxiproxy",
        "--host",
        "127.0.0.1",
        "--port",
        str(api),
        "--log-level",
        "WARNING",
    ]
    with _process(args, env):
        _wait_port(api)
        yield _create_proxy(f"http://127.0.0.1:{api}", upstream)


@contextlib.contextmanager
def socat(upstream: int) -> Iterator[int]:
    port = _free_port()
    args = [
        "socat",
        f"TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1",
        f"TCP:127.0.0.1:{upstream}",
    ]
    with _process(args):
        _wait_port(port)
        yield port


@contextlib.contextmanager
def real_toxiproxy(binary: str, upstream: int) -> Iterator[int]:
    api = _free_port()
    with _process([binary, "-host", "127.0.0.1", "-port", str(api)]):
        _wait_port(api)
        yield _create_proxy(f"http://127.0.0.1:{api}", upstream)


@contextlib.contextmanager
def direct(upstream: int) -> Iterator[int]:
    yield upstream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="round trips per row")
    parser.add_argument("--rounds", type=int, default=5, help="rows take turns this many times")
    parser.add_argument("--size", type=int, default=64, help="bytes per round trip")
    parser.add_argument("--mib", type=int, default=256, help="MiB streamed per row")
    parser.add_argument("--toxiproxy-server", help="path of a real toxiproxy-server binary")
    args = parser.parse_args()

    cases: list[tuple[str, Callable[[int], contextlib.AbstractContextManager[int]]]] = [
        ("direct", direct),
        ("embedded (in-process thread)", embedded),
        ("embedded (python -m, own process)", standalone),
    ]
    skipped: list[Row] = []
    if shutil.which("socat"):
        cases.append(("socat", socat))
    else:
        skipped.append(Row("socat", note="skipped: socat not installed (/usr/bin/socat)"))
    if args.toxiproxy_server:
        binary = args.toxiproxy_server
        cases.append(("toxiproxy-server (Go)", lambda up: real_toxiproxy(binary, up)))

    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        upstream_proc = stack.enter_context(_process([sys.executable, "-c", UPSTREAM_CODE]))
        assert upstream_proc.stdout is not None
        upstream = int(upstream_proc.stdout.readline())
        ports = [stack.enter_context(factory(upstream)) for _, factory in cases]
        # Rows take turns, so a change in the machine's load hits them all alike.
        samples: list[list[int]] = [[] for _ in cases]
        per_round = max(args.iterations // args.rounds, 1)
        for _ in range(args.rounds):
            for index, port in enumerate(ports):
                samples[index].extend(round_trips(port, per_round, args.size))
        for (name, _), port, row_samples in zip(cases, ports, samples, strict=True):
            mb_s = throughput(port, args.mib << 20)
            p50, p99 = _percentile(row_samples, 0.5), _percentile(row_samples, 0.99)
            rows.append(Row(name, p50, p99, mb_s))

    base = rows[0]
    socat_row = next((row for row in rows if row.name == "socat"), None)
    print(
        f"\n{args.iterations} round trips of {args.size} bytes per row ({args.rounds} rounds, "
        f"rows interleaved); {args.mib} MiB streamed upstream -> client per row;\n"
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loopback\n"
    )
    header = (
        f"{'path':36} {'p50 µs':>8} {'p99 µs':>8} {'added p50':>10} {'÷ socat':>8} "
        f"{'MB/s':>7} {'÷ socat':>8}"
    )
    print(header)
    print("-" * len(header))
    socat_added = None
    if socat_row is not None and socat_row.p50_us is not None and base.p50_us is not None:
        socat_added = socat_row.p50_us - base.p50_us
    for row in rows:
        assert row.p50_us is not None and row.p99_us is not None and row.mb_s is not None
        added = added_ratio = speed_ratio = ""
        if row is not base and base.p50_us is not None:
            added_us = row.p50_us - base.p50_us
            added = f"{added_us:+.1f}"
            if socat_added and socat_added > 0:
                added_ratio = f"{added_us / socat_added:.2f}x"
            if socat_row is not None and socat_row.mb_s:
                speed_ratio = f"{row.mb_s / socat_row.mb_s:.2f}x"
        print(
            f"{row.name:36} {row.p50_us:8.1f} {row.p99_us:8.1f} {added:>10} {added_ratio:>8} "
            f"{row.mb_s:7.0f} {speed_ratio:>8}"
        )
    for row in skipped:
        print(f"{row.name:36} {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
