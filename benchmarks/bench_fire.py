"""How fast a site burns: ignition latency, skew and restore time of the fault machinery,
next to the naive baselines measured in the same run on the same containers.

    python benchmarks/bench_fire.py [--sizes 1,5,10,20] [--repeat 5]

For each site size N it starts N idle containers on a labelled bridge network and prints,
in milliseconds (median of --repeat runs):

- cut: request → every target's nftables cut in place (FaultTiming.latency_ms), its skew
  (first → last cut) and the wall time of the call; "cold" is the very first cut, which
  also checks every container's labels with the engine;
- restore: request → every cut removed;
- the baselines: `network disconnect` one by one, `network connect` one by one, `pause`
  one by one (what a fire would cost without the helper);
- pause/unpause of the whole site in parallel (freeze mode);
- freeze and thaw of N storage pools (one per container).

Everything it creates carries its own session's labels and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import docker.errors
from bench_table import print_table

from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.faults.network import NetworkCutter, Targets, parallel
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.faults.storage import StoragePools
from pytest_dcfire.runtime.engine import Engine, SessionIdentity

IMAGE = "debian:bookworm-slim"


def ms(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, engine: Engine, helper: Helper, repeat: int) -> None:
        self.engine = engine
        self.api = engine.client.api
        self.helper = helper
        self.repeat = repeat
        self.network = engine.client.networks.create(
            engine.session.name("bench-net"),
            driver="bridge",
            labels=engine.session.labels("network"),
        )
        self.containers: list[str] = []

    def start(self, n: int) -> list[str]:
        def one(i: int) -> str:
            created = self.api.create_container(
                IMAGE,
                command=["sleep", "infinity"],
                name=self.engine.session.name(f"c{len(self.containers)}-{i}"),
                labels=self.engine.session.labels("service", site="bench", service=f"c{i}"),
                host_config=self.api.create_host_config(init=True, network_mode=self.network.name),
                detach=True,
            )
            self.containers.append(created["Id"])
            self.api.start(created["Id"])
            return str(created["Id"])

        return list(parallel(one, list(range(n))))

    def each(self, ids: list[str], call: Callable[[str, str], Any]) -> None:
        """The naive baseline: one engine call per container, one after the other."""
        for cid in ids:
            call(cid, self.network.id)

    def row(self, n: int) -> dict[str, float]:
        ids = self.start(n)
        targets = Targets(self.engine)
        cutter = NetworkCutter(self.engine, targets, self.helper)
        power = PowerSwitch(self.engine, targets, self.helper)
        out: dict[str, list[float]] = {}

        def add(key: str, value: float) -> None:
            out.setdefault(key, []).append(value)

        cold = True
        for _ in range(self.repeat):
            started = time.perf_counter()
            timing = cutter.cut(ids)
            call = (time.perf_counter() - started) * 1000.0
            if cold:
                add("cold", timing.latency_ms)
                cold = False
            add("cut", timing.latency_ms)
            add("skew", timing.skew_ms)
            add("call", call)
            restore = cutter.restore()
            add("restore", restore.latency_ms)

            add(
                "disconnect", ms(lambda: self.each(ids, self.api.disconnect_container_from_network))
            )
            add("reconnect", ms(lambda: self.each(ids, self.api.connect_container_to_network)))
            add("pause1", ms(lambda: [self.api.pause(c) for c in ids]))
            for c in ids:
                self.api.unpause(c)
            add("pause", power.pause(ids).latency_ms)
            add("unpause", power.unpause().latency_ms)

        pools = StoragePools(self.engine, self.helper)
        made = [pools.create_pool(f"b{n}-{i}", 16, "bench") for i in range(n)]
        for _ in range(self.repeat):
            add("freeze", pools.freeze(made).latency_ms)
            add("thaw", pools.thaw(made).latency_ms)
        for pool in made:
            pools.destroy(pool)
        for c in ids:
            self.api.remove_container(c, force=True)
            self.containers.remove(c)
        return {k: median(v) for k, v in out.items()}

    def close(self) -> None:
        for c in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(c, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.network.remove()


COLUMNS = [
    ("cut", "cut"),
    ("skew", "skew"),
    ("call", "cut call"),
    ("cold", "cold cut"),
    ("restore", "restore"),
    ("disconnect", "disconnect 1by1"),
    ("reconnect", "reconnect 1by1"),
    ("pause1", "pause 1by1"),
    ("pause", "pause ∥"),
    ("unpause", "unpause ∥"),
    ("freeze", "freeze N pools"),
    ("thaw", "thaw N pools"),
]


def run(
    argv: list[str],
    columns: list[tuple[str, str]],
    row: Callable[[Bench, int], dict[str, float]],
    default_sizes: str = "1,5,10,20",
    first: str = "N",
    note: str = "",
) -> int:
    """Measure `row(bench, n)` for each size on one helper, then print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=default_sizes)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = Engine.connect(SessionIdentity.new(worker="bench"))
    helper = Helper(engine, progress=lambda m: print(m, file=sys.stderr)).start()
    bench = Bench(engine, helper, args.repeat)
    rows: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            print(f"measuring {n} ({first})...", file=sys.stderr)
            rows[n] = row(bench, n)
    finally:
        bench.close()
        helper.close()
        engine.close()
    head = [first, *[title for _, title in columns]]
    table = [[str(n), *[f"{rows[n][key]:.1f}" for key, _ in columns]] for n in sizes]
    print_table(f"milliseconds, median of {args.repeat}{note}", head, table, numbers=True)
    return 0


def main(argv: list[str]) -> int:
    return run(
        argv,
        COLUMNS,
        Bench.row,
        note=" (nftables through the helper; baselines are the engine API called one "
        "container at a time)",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
