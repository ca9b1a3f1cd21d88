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

import sys
import time

from bench_fire import Bench, median, run

from pytest_dcfire.faults.network import NetworkCutter, Targets
from pytest_dcfire.faults.peers import PeerCutter

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
    return run(
        argv,
        COLUMNS,
        row,
        default_sizes="1,10,20",
        first="N vs N",
        note=" (nftables through the helper)",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
