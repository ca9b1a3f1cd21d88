"""Schedule overhead: how late a scheduled fault is in place, against its due time.

    python benchmarks/bench_chaos.py [--steps 100] [--spacing 0.2]

It runs a real pytest session (a subprocess, as a user's run) on a two-site topology of echo
servers whose data lives on their site's storage pool. Its one test runs `dcfire.schedule`
with --steps steps, --spacing seconds apart, each held half that long, cycling through the
kinds that lift in milliseconds (fire, freeze, partition, brownout; alternating sites), and
records every event's lateness: from its due time to the fault being in place (late), and
the runner's own part of it (wake: due time to the runner calling the controller). It prints
p50 / p99 / max per kind and overall, and beside them the faults' own apply times as the
fire controller measured them (a fire's cut, a link fault's set-up). Target: p99 <= 20 ms.
Nothing is asserted.
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
from bench_table import print_table
from inner_session import echo_topology

KINDS = ("fire", "freeze", "partition", "brownout")

BENCH_TEST = """
import json, os, pathlib

OUT = pathlib.Path(os.environ["DCFIRE_CHAOS_OUT"])
STEPS = int(os.environ["DCFIRE_CHAOS_STEPS"])
SPACING = float(os.environ["DCFIRE_CHAOS_SPACING"])
KINDS = ("fire", "freeze", "partition", "brownout")


def test_schedule_overhead(dcfire):
    steps = []
    for i in range(STEPS):
        kind = KINDS[i % len(KINDS)]
        site = ("east", "west")[(i // len(KINDS)) % 2]
        targets = ("east", "west") if kind == "partition" else site
        options = {"for": SPACING / 2}
        if kind == "brownout":
            options["latency"] = 100
        steps.append((1.0 + i * SPACING, kind, targets, options))
    with dcfire.schedule(steps, quiet=0) as schedule:
        schedule.wait()
    fires = iter(dcfire.fires)
    links = iter(dcfire.link_faults)
    rows = []
    for e in schedule.events:
        if e.kind in ("partition", "brownout"):
            own = next(links).setup_ms
        else:
            own = next(fires).record.cut_ms
        rows.append({"kind": e.kind, "late_ms": e.late_ms, "wake_ms": e.wake_ms, "apply_ms": own,
                     "error": e.error})
    OUT.write_text(json.dumps(rows))
"""


def run(workdir: Path, steps: int, spacing: float) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "topology.yml").write_text(textwrap.dedent(echo_topology()))
    (workdir / "pytest.ini").write_text(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n"
    )
    (workdir / "test_chaos_inner.py").write_text(BENCH_TEST)
    out = workdir / "chaos.json"
    import pytest_dcfire

    root = str(Path(pytest_dcfire.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "DCFIRE_CHAOS_OUT": str(out),
        "DCFIRE_CHAOS_STEPS": str(steps),
        "DCFIRE_CHAOS_SPACING": str(spacing),
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not out.exists():
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the inner session failed (exit {proc.returncode})")
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, rows: list[dict[str, Any]]) -> list[object]:
    late = [float(r["late_ms"]) for r in rows]
    wake = [float(r["wake_ms"]) for r in rows]
    own = [float(r["apply_ms"]) for r in rows]
    return [
        name,
        len(rows),
        f"{statistics.median(wake):.1f}",
        f"{quantile(wake, 0.99):.1f}",
        f"{statistics.median(late):.1f}",
        f"{quantile(late, 0.99):.1f}",
        f"{max(late):.1f}",
        f"{statistics.median(own):.1f}",
        f"{quantile(own, 0.99):.1f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcfire-bench-chaos-") as tmp:
        rows = run(Path(tmp), args.steps, args.spacing)
    errors = [r for r in rows if r["error"]]
    table = [line(kind, [r for r in rows if r["kind"] == kind]) for kind in KINDS]
    table.append(line("all", rows))
    print_table(
        f"Scheduled fault lateness, ms ({len(rows)} steps, {args.spacing:g} s apart; "
        "wake = due time to the runner applying it; late = due time to fault in place; "
        "own apply = the fault's cut / set-up as the controller measured it)",
        [
            "kind",
            "n",
            "wake p50",
            "wake p99",
            "late p50",
            "late p99",
            "late max",
            "own apply p50",
            "own apply p99",
        ],
        table,
        numbers=True,
    )
    if errors:
        print(f"\n{len(errors)} step(s) failed: {errors[0]['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
