"""How fast a clock jump is applied and lifted (`dcfire.clock`'s control-file write).

    python benchmarks/bench_clock.py [--repeat 20] [--instances 1,10]

Creates the session's clock volume (building the clock image once), starts one idle
`clock: controllable`-style container, and prints, in milliseconds (median of --repeat):

- apply: writing `+3600` into the control files of N instances (one archive upload);
- lift: writing `+0` back;
- seen: request → a new process in the container reads the moved clock (one `docker
  exec`, so mostly exec latency: the running processes see it on their next call).

Everything it creates carries its own session's labels and is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from pytest_dcfire.runtime.clocks import Clocks, environment
from pytest_dcfire.runtime.engine import Engine, SessionIdentity

PROBE = ["python3", "-c", "import time; print(time.time())"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--instances", default="1,10")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.instances.split(",")]
    engine = Engine.connect(SessionIdentity.new(worker="bench-clock"))
    names = [f"svc{i}" for i in range(max(sizes))]
    clocks = Clocks(engine, names).start()
    api = engine.client.api
    container = None
    try:
        created = api.create_container(
            "debian:bookworm-slim",
            command=["sleep", "infinity"],
            environment=environment("svc0"),
            labels=engine.session.labels("bench"),
            host_config=api.create_host_config(binds=clocks.binds()),
        )
        container = created["Id"]
        api.start(container)
        print(f"{'instances':>9} {'apply ms':>9} {'lift ms':>8} {'seen ms':>8}")
        for n in sizes:
            apply, lift, seen = [], [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                apply.append(clocks.set(names[:n], "+3600"))
                exec_id = api.exec_create(container, PROBE)["Id"]
                moved = float(api.exec_start(exec_id).decode()) - time.time()
                seen.append((time.perf_counter() - started) * 1000.0)
                if abs(moved - 3600) > 30:
                    print(f"the clock did not move: {moved:+.1f} s", file=sys.stderr)
                    return 1
                lift.append(clocks.set(names[:n], "+0"))
            print(
                f"{n:>9} {statistics.median(apply):>9.1f} {statistics.median(lift):>8.1f} "
                f"{statistics.median(seen):>8.1f}"
            )
    finally:
        if container is not None:
            api.remove_container(container, force=True)
        clocks.close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
