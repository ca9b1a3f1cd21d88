"""What `dcfire_share = session` costs: the same suite with a copy per xdist worker, with one
shared copy, and with no xdist at all.

    python benchmarks/bench_share.py [--repeat 1] [--tests 8] [--seconds 1.0]

The inner suite (a real pytest subprocess, as a user's run) has --tests tests on a two-site
topology of echo servers whose data lives on their site's pool: half burn a site
(`@dc_fire`, body sleeps --seconds), half only use `dcfire_topology` (an echo, then the same
sleep). Per mode it prints the wall time of the whole run, the start-up each worker paid
before its first test could use the system (the `dcfire_topology` set-up: a whole copy per
worker, or an attach to the shared one), the controller's own start of the shared copy, and
the seconds tests waited for the fire lock (from the JUnit property `dcfire_lock_wait_s`).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "docker"))
from inner_session import echo_topology

TOPOLOGY = echo_topology()

CONFTEST = """
import json, os, pathlib, time
import pytest

OUT = pathlib.Path(os.environ["DCFIRE_BENCH_OUT"])


@pytest.fixture(scope="session", autouse=True)
def _startup(request):
    if "dcfire_topology" not in request.fixturenames:
        yield
        return
    started = time.monotonic()
    request.getfixturevalue("dcfire_topology")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"startup-{worker}.json").write_text(json.dumps(time.monotonic() - started))
    yield
"""


def suite(tests: int, seconds: float) -> str:
    lines = [
        "import socket, time",
        "from pytest_dcfire import dc_fire",
        "",
        "def echo(addr):",
        "    with socket.create_connection(addr, timeout=2) as s:",
        "        s.sendall(b'ping')",
        "        assert s.recv(10) == b'ping'",
        "",
    ]
    for n in range(tests):
        site = ("east", "west")[n % 2]
        if n % 2 == 0:
            lines += [f"@dc_fire({site!r})", f"def test_burn_{n}(dcfire_topology):"]
        else:
            lines += [
                f"def test_look_{n}(dcfire_topology):",
                "    for h in dcfire_topology:",
                "        echo(h.address(7000))",
            ]
        lines += [f"    time.sleep({seconds})", ""]
    return "\n".join(lines)


def run(mode: str, tests: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        path = Path(tmp)
        (path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
        share = "session" if mode == "-n 2, share=session" else "worker"
        (path / "pytest.ini").write_text(
            "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n"
            f"dcfire_share = {share}\n"
        )
        (path / "conftest.py").write_text(CONFTEST)
        (path / "test_bench.py").write_text(suite(tests, seconds))
        out = path / "out"
        out.mkdir()
        import pytest_dcfire

        root = str(Path(pytest_dcfire.__file__).resolve().parent.parent)
        env = {**os.environ, "DCFIRE_BENCH_OUT": str(out), "PYTHONPATH": root}
        args = ["-n", "2"] if mode.startswith("-n 2") else ["-p", "no:xdist"]
        junit = path / "junit.xml"
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
        proc = subprocess.run(
            [*command, f"--junitxml={junit}", "-o", "junit_family=xunit1"],
            cwd=path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: the inner run failed:\n{proc.stdout}\n{proc.stderr}")
        startups = [json.loads(p.read_text()) for p in sorted(out.glob("startup-*.json"))]
        waits = [
            float(prop.get("value", 0))
            for prop in ET.parse(junit).iter("property")
            if prop.get("name") == "dcfire_lock_wait_s"
        ]
        controller = re.search(r"healthy in ([0-9.]+) s", proc.stdout)
        return {
            "wall": wall,
            "startup": startups,
            "controller": float(controller.group(1)) if share == "session" and controller else None,
            "waits": waits,
        }


MODES = ("-n 2, per worker", "-n 2, share=session", "-n 0 (no xdist)")


def table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    head = (
        f"{'mode':<22} {'wall s':>7} {'start-up s per worker':>22} {'shared copy s':>14} "
        f"{'lock wait s total':>18} {'max':>6}"
    )
    lines = [head, "-" * len(head)]
    for mode, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        startups = [s for r in runs for s in r["startup"]]
        start = f"{statistics.median(startups):.2f} (max {max(startups):.2f})" if startups else "-"
        shared = [r["controller"] for r in runs if r["controller"] is not None]
        waits = [sum(r["waits"]) for r in runs]
        longest = max((w for r in runs for w in r["waits"]), default=0.0)
        lines.append(
            f"{mode:<22} {wall:>7.2f} {start:>22} "
            f"{(f'{statistics.median(shared):.2f}' if shared else '-'):>14} "
            f"{(f'{statistics.median(waits):.2f}' if any(r['waits'] for r in runs) else '-'):>18} "
            f"{(f'{longest:.2f}' if any(r['waits'] for r in runs) else '-'):>6}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tests", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            results[mode].append(run(mode, args.tests, args.seconds))
    burning = args.tests // 2 + args.tests % 2
    print(
        f"{args.tests} tests ({burning} burning a site, the rest topology-only), each body "
        f"{args.seconds:.1f} s; median of {args.repeat} run(s)"
    )
    for line in table(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
