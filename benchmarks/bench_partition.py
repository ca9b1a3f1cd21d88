"""How fast a partition cuts the direct traffic between two sites (the peer cut), next to a
fire's cut of the same containers, measured in the same run.

    python benchmarks/bench_partition.py [--sizes 1,10,20] [--repeat 5]

For each size N it starts 2N idle containers (site a: N, site b: N) on a labelled bridge
network and prints, in milliseconds (median of --repeat runs):

- peer cut: request → every one of the 2N tables in place (FaultTiming.latency_ms; each
  of a's containers blocks b's N addresses and the other way round), its skew, and the
  wall time of the whole call, which includes inspecting the 2N containers (ownership,
  pids, addresses are read fresh at every partition);
- peer restore: request → every peer table removed;
- fire cut / fire restore: the blackhole of the same 2N containers, for comparison.

Everything it creates carries its own session's labels and is removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench_fire import Bench, median

from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.faults.network import NetworkCutter, Targets
from pytest_dcfire.faults.peers import PeerCutter
from pytest_dcfire.runtime.engine import Engine, SessionIdentity

COLUMNS = [
    ("peer", "peer cut"),
    ("peer_skew", "skew"),
    ("peer_call", "peer cut call"),
    ("peer_restore", "peer restore"),
    ("fire", "fire cut (2N)"),
    ("fire_restore", "fire restore"),
]


def row(bench: Bench, n: int) -> dict[str, float]:
    ids = bench.start(2 * n)
    side_a, side_b = ids[:n], ids[n:]
    targets = Targets(bench.engine)
    peers = PeerCutter(bench.engine, targets, bench.helper)
    cutter = NetworkCutter(bench.engine, targets, bench.helper)
    out: dict[str, list[float]] = {}
    for _ in range(bench.repeat):
        started = time.perf_counter()
        name, timing = peers.cut(side_a, side_b)
        out.setdefault("peer_call", []).append((time.perf_counter() - started) * 1000.0)
        out.setdefault("peer", []).append(timing.latency_ms)
        out.setdefault("peer_skew", []).append(timing.skew_ms)
        out.setdefault("peer_restore", []).append(peers.restore(name).latency_ms)
        out.setdefault("fire", []).append(cutter.cut(ids).latency_ms)
        out.setdefault("fire_restore", []).append(cutter.restore().latency_ms)
    for c in ids:
        bench.api.remove_container(c, force=True)
        bench.containers.remove(c)
    return {k: median(v) for k, v in out.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,20")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = Engine.connect(SessionIdentity.new(worker="bench"))
    helper = Helper(engine, progress=lambda m: print(m, file=sys.stderr)).start()
    bench = Bench(engine, helper, args.repeat)
    rows: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            print(f"measuring {n} vs {n} container(s)...", file=sys.stderr)
            rows[n] = row(bench, n)
    finally:
        bench.close()
        helper.close()
        engine.close()
    head = ["N vs N", *[title for _, title in COLUMNS]]
    table = [head] + [[str(n), *[f"{rows[n][key]:.1f}" for key, _ in COLUMNS]] for n in sizes]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print(f"\nmilliseconds, median of {args.repeat} (nftables through the helper)")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table[1:]:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
