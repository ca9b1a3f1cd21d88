"""What a power loss costs: N containers with a pool volume each, their power cut (SIGKILL
through the helper + ext4 shutdown of every pool) and restored (remount with journal
replay, start, healthy), next to `docker kill` + `docker start` one by one in the same run.

    python benchmarks/bench_power.py [--sizes 1,10] [--repeat 5]

Columns, in milliseconds (median of --repeat):

- ignite: request → every container killed and every pool shut down;
- restore: exited → pools mounted again → started → every container's port answers;
- cycle: ignite + restore;
- kill 1by1 (until exited) / start 1by1 (+healthy): the engine's own kill and start called
  one container at a time, then the same health wait (what a power loss would cost without
  the helper, and without losing anything: the disks keep their page cache);
- the baseline's cycle.

Everything it creates carries its own session's labels and is removed at the end.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from bench_fire import Bench, median, ms, run
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from pytest_dcfire.faults.network import Targets, parallel
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.faults.storage import Pool, StoragePools

LISTEN = (
    "import socket; s = socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(64)\n"
    "open('/data/started', 'a').write('x')\n"
    "while True: s.accept()[0].close()"
)


def healthy(api: Any, ids: list[str]) -> None:
    """Wait until every container's port 7000 accepts a connection (its new address)."""

    def one(cid: str) -> None:
        def connect() -> None:
            nets = api.inspect_container(cid)["NetworkSettings"]["Networks"]
            ip = next(iter(nets.values()))["IPAddress"]
            socket.create_connection((ip, 7000), timeout=0.5).close()

        waiting = Retrying(
            stop=stop_after_delay(60),
            wait=wait_fixed(0.01),
            retry=retry_if_exception_type((OSError, StopIteration)),
            reraise=True,
        )
        waiting(connect)

    parallel(one, ids)


def start_with_pools(
    bench: Bench, n: int, size_mb: int = 16, prefix: str = "p"
) -> tuple[StoragePools, list[Pool], list[str]]:
    """`n` listening containers, each with a pool of `size_mb` mounted at /data, healthy."""
    api = bench.api
    pools = StoragePools(bench.engine, bench.helper)
    made = [pools.create_pool(f"{prefix}{n}-{i}", size_mb, "bench") for i in range(n)]

    def start(i: int) -> str:
        created = api.create_container(
            "debian:bookworm-slim",
            command=["python3", "-c", LISTEN],
            name=bench.engine.session.name(f"{prefix}w{n}-{i}"),
            labels=bench.engine.session.labels("service", site="bench", service=f"pw{i}"),
            host_config=api.create_host_config(
                network_mode=bench.network.name, binds={made[i].volume: {"bind": "/data"}}
            ),
            detach=True,
        )
        bench.containers.append(created["Id"])
        api.start(created["Id"])
        return str(created["Id"])

    ids = list(parallel(start, list(range(n))))
    healthy(api, ids)
    return pools, made, ids


def remove(bench: Bench, pools: StoragePools, made: list[Pool], ids: list[str]) -> None:
    for c in ids:
        bench.api.remove_container(c, force=True)
        bench.containers.remove(c)
    for pool in made:
        pools.destroy(pool)


def row(bench: Bench, n: int) -> dict[str, float]:
    api = bench.api
    pools, made, ids = start_with_pools(bench, n)
    power = PowerSwitch(bench.engine, Targets(bench.engine), bench.helper)
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    try:
        for _ in range(bench.repeat):
            started = time.perf_counter()
            power.power_off(ids)
            pools.shutdown(made)
            ignite = (time.perf_counter() - started) * 1000.0

            def restore() -> None:
                add("exited", ms(lambda: power.wait_exited(ids)))
                add("remount", ms(lambda: pools.remount(made)))
                add("start", ms(power.power_on))
                add("healthy", ms(lambda: healthy(api, ids)))

            back = ms(restore)
            add("ignite", ignite)
            add("restore", back)
            add("cycle", ignite + back)

            def kill_all() -> None:
                for c in ids:
                    api.kill(c)
                for c in ids:  # counted, as the power loss's restore counts its exit wait
                    api.wait(c, timeout=30)

            kill = ms(kill_all)

            def start_all() -> None:
                for c in ids:
                    api.start(c)
                healthy(api, ids)

            up = ms(start_all)
            add("kill1", kill)
            add("start1", up)
            add("naive", kill + up)
    finally:
        remove(bench, pools, made, ids)
    return {k: median(v) for k, v in out.items()}


COLUMNS = [
    ("ignite", "ignite"),
    ("restore", "restore (remount, start, healthy)"),
    ("cycle", "power-loss cycle"),
    ("exited", "(exited"),
    ("remount", "remount"),
    ("start", "start"),
    ("healthy", "healthy)"),
    ("kill1", "docker kill 1by1 (exited)"),
    ("start1", "docker start 1by1 + healthy"),
    ("naive", "kill+start cycle"),
]


def main(argv: list[str]) -> int:
    return run(
        argv,
        COLUMNS,
        row,
        default_sizes="1,10",
        note=" (power loss through the helper: kill + ext4 shutdown, remount + start; "
        "baseline: the engine's kill and start one container at a time)",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
