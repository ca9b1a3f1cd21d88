"""Soak: many fire/restore cycles in one pytest session, and what they cost over time.

    python benchmarks/bench_soak.py [--cycles 100]

It runs a real pytest session (a subprocess, as a user's run) on a two-site topology of echo
servers whose data lives on their site's storage pool, whose one test burns site `east`
(`with dcfire.fire("east")`: nftables cut and pool freeze, then restore and health check)
again and again, and records after every cycle: the cycle's wall time, the open file
descriptors, threads and RSS of the pytest process, the nftables rules in the burning
containers' netns (while burning and after the restore) and the session's loop devices.
It prints them at cycles 1, 10, 50 and the last, and the cycle time at the end against the
start (single cycles, and medians of the first and last ten). Nothing here is asserted;
tests/docker/test_soak.py asserts generous no-growth bounds on the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "docker"))
from inner_session import echo_topology

TOPOLOGY = echo_topology()

#: The inner test: it measures its own process, so these are the plugin's resources.
SOAK_TEST = """
import json, os, pathlib, subprocess, threading, time

OUT = pathlib.Path(os.environ["DCFIRE_SOAK_OUT"])
CYCLES = int(os.environ["DCFIRE_SOAK_CYCLES"])


def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def nft_rules(pids):
    total = 0
    for pid in pids:
        out = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "nft", "list", "ruleset"],
            capture_output=True, text=True, check=False, timeout=10,
        ).stdout
        total += sum(1 for line in out.splitlines() if line.strip())
    return total


def loops(session):
    found = 0
    for path in pathlib.Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if f"/{session}/" in path.read_text():
                found += 1
        except OSError:
            pass
    return found


def test_soak(dcfire, dcfire_topology):
    session = dcfire_topology.session_id
    pids = [int(h.container.attrs["State"]["Pid"]) for h in dcfire_topology if h.site == "east"]
    rows = []
    for cycle in range(1, CYCLES + 1):
        started = time.perf_counter()
        with dcfire.fire("east"):
            # Proof that the cut is real, on two cycles that are then not timed.
            burning = nft_rules(pids) if cycle in (2, CYCLES - 1) else None
        seconds = None if burning is not None else time.perf_counter() - started
        rows.append({
            "cycle": cycle,
            "seconds": seconds,
            "fds": len(os.listdir("/proc/self/fd")),
            "threads": threading.active_count(),
            "rss_kb": rss_kb(),
            "nft_burning": burning,
            "nft_after": nft_rules(pids),
            "loops": loops(session),
        })
    OUT.write_text(json.dumps({"session": session, "rows": rows}))
"""


def run(workdir: Path, cycles: int, timeout: float = 600.0) -> dict[str, Any]:
    """Run the soak session in `workdir`; return {"session", "rows", "output", "returncode"}."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    (workdir / "pytest.ini").write_text(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n"
    )
    (workdir / "test_soak_inner.py").write_text(SOAK_TEST)
    out = workdir / "soak.json"
    import pytest_dcfire

    root = str(Path(pytest_dcfire.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "DCFIRE_SOAK_OUT": str(out),
        "DCFIRE_SOAK_CYCLES": str(cycles),
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result: dict[str, Any] = {"output": proc.stdout + proc.stderr, "returncode": proc.returncode}
    if out.exists():
        result.update(json.loads(out.read_text()))
    return result


def checkpoints(cycles: int) -> list[int]:
    return sorted({c for c in (1, 10, 50, cycles) if c <= cycles})


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The soak table at cycles 1, 10, 50 and the last, plus the cycle-time comparison."""
    by_cycle = {r["cycle"]: r for r in rows}
    last = rows[-1]["cycle"]
    lines = [
        f"{'cycle':>6} {'cycle ms':>9} {'fds':>5} {'threads':>8} {'RSS MiB':>8} "
        f"{'nft burning*':>12} {'nft after':>10} {'loops':>6}"
    ]
    for c in checkpoints(last):
        r = by_cycle[c]
        timed = timed_ms(rows, c)
        burning = next(
            (str(x["nft_burning"]) for x in rows[max(0, c - 2) : c + 1] if x["nft_burning"]),
            "-",
        )
        lines.append(
            f"{c:>6} {timed:>9.1f} {r['fds']:>5} {r['threads']:>8} {r['rss_kb'] / 1024:>8.1f} "
            f"{burning:>12} {r['nft_after']:>10} {r['loops']:>6}"
        )
    first, end = window(rows, first=True), window(rows, first=False)
    one, hundred = timed_ms(rows, 1), timed_ms(rows, last)
    lines.append(
        f"cycle time: cycle {last} / cycle 1 = {hundred / one:.2f} ({hundred:.1f} / {one:.1f} ms); "
        f"median of the last 10 / first 10 = {end / first:.2f} ({end:.1f} / {first:.1f} ms)"
    )
    lines.append("* nft rules in the burning netns, measured at cycles 2 and last-1 (not timed)")
    return lines


def timed_ms(rows: list[dict[str, Any]], cycle: int) -> float:
    """Cycle time in ms; cycles that also measured the rules while burning take a neighbour."""
    by_cycle = {r["cycle"]: r for r in rows}
    for c in (cycle, cycle + 1, cycle - 1, cycle + 2, cycle - 2):
        r = by_cycle.get(c)
        if r is not None and r["seconds"] is not None:
            return float(r["seconds"]) * 1000.0
    return float("nan")


def window(rows: list[dict[str, Any]], first: bool, size: int = 10) -> float:
    timed = [r["seconds"] * 1000.0 for r in rows if r["seconds"] is not None]
    part = timed[:size] if first else timed[-size:]
    return statistics.median(part) if part else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcfire-soak-") as tmp:
        result = run(Path(tmp), args.cycles)
    if result["returncode"] != 0 or "rows" not in result:
        print(result["output"])
        return 1
    print(f"soak: {args.cycles} fire/restore cycles of site east, session {result['session']}")
    for line in table(result["rows"]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
