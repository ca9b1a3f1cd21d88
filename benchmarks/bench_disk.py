"""What a disk fault costs: N containers with a pool volume each (the default 256 MiB),
their disks failed (`fail`: ext4 shutdown) or filled (`full`: a filler file), and lifted.

    python benchmarks/bench_disk.py [--sizes 1,10] [--repeat 5]

Columns, in milliseconds (median of --repeat):

- fail apply: request → every pool shut down (every I/O returns EIO);
- fail lift: the containers killed → exited → pools mounted again (journal replay) →
  started → every container's port answers (a failed disk comes back only once nothing
  mounts it), with its parts;
- full apply: request → every pool filled (writes return ENOSPC);
- full lift: request → every filler removed and the freed blocks committed.

The calls are the ones `dcfire.disk(...)` makes, through one helper. Everything it creates
carries its own session's labels and is removed at the end.
"""

from __future__ import annotations

import sys
import time

from bench_fire import Bench, median, ms, run
from bench_power import healthy, remove, start_with_pools

from pytest_dcfire.faults.network import Targets
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.topology.model import DEFAULT_POOL_MB


def row(bench: Bench, n: int) -> dict[str, float]:
    pools, made, ids = start_with_pools(bench, n, DEFAULT_POOL_MB, prefix="d")
    power = PowerSwitch(bench.engine, Targets(bench.engine), bench.helper)
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    try:
        for _ in range(bench.repeat):
            add("fail", ms(lambda: pools.shutdown(made)))
            started = time.perf_counter()
            add("kill", ms(lambda: power.power_off(ids)))
            add("exited", ms(lambda: power.wait_exited(ids)))
            add("remount", ms(lambda: pools.remount(made)))
            add("start", ms(power.power_on))
            add("healthy", ms(lambda: healthy(bench.api, ids)))
            add("unfail", (time.perf_counter() - started) * 1000.0)
            add("full", ms(lambda: pools.fill(made)))
            add("unfull", ms(lambda: pools.unfill(made)))
    finally:
        remove(bench, pools, made, ids)
    return {k: median(v) for k, v in out.items()}


COLUMNS = [
    ("fail", "fail apply"),
    ("unfail", "fail lift"),
    ("kill", "(kill"),
    ("exited", "exited"),
    ("remount", "remount"),
    ("start", "start"),
    ("healthy", "healthy)"),
    ("full", "full apply"),
    ("unfull", "full lift"),
]


def main(argv: list[str]) -> int:
    return run(
        argv,
        COLUMNS,
        row,
        default_sizes="1,10",
        note=f" (pools of {DEFAULT_POOL_MB} MiB; through the helper: fail = ext4 shutdown, "
        "lifted by kill, remount, start; full = a preallocated filler file)",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
