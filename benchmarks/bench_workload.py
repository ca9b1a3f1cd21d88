"""What recording costs: calls per second of a trivial operation run by the Workload (every
call numbered, timed, classified and recorded) next to the same threads calling it bare
(numbered, not recorded), measured in the same run.

    python benchmarks/bench_workload.py [--seconds 1.0] [--threads 1,4,16]

Both sides run `threads` threads for `seconds`, with no interval, so the numbers are the
machinery's ceiling; a real workload is paced by its `interval` and by the network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence

from bench_table import print_table

from pytest_dcfire.history import Workload


def trivial(n: int) -> int:
    return n


def failing(n: int) -> int:
    raise TimeoutError("no answer")


def bare(threads: int, seconds: float) -> int:
    """The baseline: the same threads, a shared counter for n, the call, nothing else."""
    stop = threading.Event()
    lock = threading.Lock()
    counter = [0]

    def work() -> None:
        while not stop.is_set():
            with lock:
                counter[0] += 1
                n = counter[0]
            try:  # noqa: SIM105 - the same try as the workload's, at the same cost
                trivial(n)
            except Exception:  # pragma: no cover - trivial does not raise
                pass

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return counter[0]


def recorded(threads: int, seconds: float, op: object = trivial) -> int:
    with Workload(op, threads=threads, interval=0) as workload:  # type: ignore[arg-type]
        time.sleep(seconds)
    return len(workload.history)


table = print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", default="1,4,16")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    rows: list[Sequence[object]] = []
    for threads in (int(t) for t in args.threads.split(",")):
        base = statistics.median(bare(threads, args.seconds) for _ in range(args.repeat))
        ours = statistics.median(recorded(threads, args.seconds) for _ in range(args.repeat))
        errs = statistics.median(
            recorded(threads, args.seconds, failing) for _ in range(args.repeat)
        )
        base_rate, rate, err_rate = base / args.seconds, ours / args.seconds, errs / args.seconds
        rows.append(
            (
                threads,
                f"{base_rate:,.0f}",
                f"{rate:,.0f}",
                f"{err_rate:,.0f}",
                f"{(1 / rate - 1 / base_rate) * 1e6:.1f}",
                f"{rate / base_rate:.0%}",
            )
        )
    table(
        f"calls per second of a trivial operation (median of {args.repeat} runs of "
        f"{args.seconds:g} s)",
        (
            "threads",
            "bare (baseline)",
            "Workload, recorded",
            "Workload, op raises",
            "added per call (µs)",
            "recorded / bare",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
