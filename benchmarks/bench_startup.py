"""Start N independent services: wave-parallel (what the plugin does) vs one by one.

    python benchmarks/bench_startup.py [--repeat 3] [--sizes 1,5,10]

Each service is a python3 HTTP server with a tcp health check; the time is from "start" to
"every instance healthy" (network and teardown excluded), median of --repeat runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytest_dcfire.runtime.engine import Engine, SessionIdentity
from pytest_dcfire.runtime.system import System
from pytest_dcfire.topology.model import HealthCheck, Service, Site, Topology, Volume

IMAGE = "debian:bookworm-slim"


class NoVolumes:
    def volume_for(self, service: Service, volume: Volume) -> str:
        raise AssertionError("the benchmark topology has no volumes")

    def close(self) -> None:
        pass


class OneByOne(System):
    """The naive baseline: every engine call and health wait in sequence."""

    def _parallel(
        self, fn: Callable[[Any], Any], items: Sequence[Any], swallow: bool = False
    ) -> list[Any]:
        return [fn(item) for item in items]


def topology(n: int) -> Topology:
    services = tuple(
        Service(
            name=f"s{i}",
            base=f"s{i}",
            site="a",
            image=IMAGE,
            command=("python3", "-m", "http.server", "8080"),
            healthcheck=HealthCheck("tcp", port=8080),
        )
        for i in range(n)
    )
    return Topology("bench", (Site("a"),), services)


def one_run(kind: type[System], n: int) -> float:
    engine = Engine.connect(SessionIdentity.new())
    system = kind(engine, topology(n), NoVolumes(), progress=lambda line: None)
    try:
        system._create_network()
        started = time.monotonic()
        addresses = system._addresses()
        handles = system._parallel(
            lambda s: system._start_one(s, IMAGE, addresses[s.name]), topology(n).services
        )
        system._handles.update({h.name: h for h in handles})
        system._parallel(lambda h: system.wait_healthy([h]), handles)
        return time.monotonic() - started
    finally:
        system.stop()
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1,5,10")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"start N independent services until healthy, median of {args.repeat} (ms)")
    print(f"{'N':>3}  {'wave-parallel':>14}  {'one by one':>11}  {'speed-up':>8}")
    for n in sizes:
        parallel = statistics.median(one_run(System, n) for _ in range(args.repeat))
        serial = statistics.median(one_run(OneByOne, n) for _ in range(args.repeat))
        speedup = serial / parallel
        print(f"{n:>3}  {parallel * 1000:>14.0f}  {serial * 1000:>11.0f}  {speedup:>7.1f}x")


if __name__ == "__main__":
    main()
