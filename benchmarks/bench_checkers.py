"""How fast the history checkers are: lost writes and availability on 1k-100k operations,
linearizability on 100-5000 operations (register, kv, counter; with the limits), next to a
plain Wing & Gong / Lowe search (memo only, no reductions) measured in the same run.

    python benchmarks/bench_checkers.py [--timeout 10] [--data /work/shared/data/histories]

Histories come from `pytest_dcfire.history.synthetic` (linearizable by construction, fixed
seeds), so every verdict printed should be "ok"; "gave up" means the budget ran out. The
last table checks the largest and the slowest histories of the shared data set.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench_table import print_table

from pytest_dcfire.history import History, Op, check, load
from pytest_dcfire.history.formats import shared_histories
from pytest_dcfire.history.linearizability import _events, _items, _OutOfBudget
from pytest_dcfire.history.models import State, resolve
from pytest_dcfire.history.synthetic import ModelName, linearizable_history


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Median wall time in seconds over `repeat` runs, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


table = print_table


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# ---------------------------------------------------------------------------------------
# Lost writes and availability
# ---------------------------------------------------------------------------------------


def write_history(n: int, rng: random.Random) -> tuple[History, list[int]]:
    ops = []
    present = []
    t = 0.0
    for k in range(1, n + 1):
        t += 0.001
        outcome = rng.choices(["ok", "info", "fail"], [90, 5, 5])[0]
        ops.append(Op("write", k, type=outcome, invoke=t, complete=t + 0.002, id=k))  # type: ignore[arg-type]
        if (outcome == "ok" and rng.random() > 0.01) or (outcome == "info" and rng.random() < 0.5):
            present.append(k)
    history = History(ops)
    history.mark("ignite", n * 0.0004)
    return history, present


def set_difference(history: History, present: list[int]) -> set[Any]:
    return {o.value for o in history.ops if o.type == "ok"} - set(present)


def bench_lost_writes() -> None:
    rows: list[Sequence[object]] = []
    rng = random.Random(1)
    for n in (1_000, 10_000, 100_000):
        history, present = write_history(n, rng)
        history.ops  # noqa: B018 - sort once, outside the timings
        lost_s, lost = timed(partial(history.lost_writes, present))
        avail_s, _ = timed(partial(history.availability, lost=lost))
        # Baseline: the obvious set difference, with none of the reporting.
        base_s, _ = timed(partial(set_difference, history, present))
        rows.append((n, ms(lost_s), ms(avail_s), ms(base_s), len(lost.lost), len(lost.maybe_lost)))
    table(
        "lost_writes / availability (ms, median of 3)",
        ("ops", "lost_writes", "availability", "baseline: set difference", "lost", "maybe lost"),
        rows,
    )


# ---------------------------------------------------------------------------------------
# Linearizability
# ---------------------------------------------------------------------------------------


class PlainWGL:
    """The textbook search (Wing & Gong with Lowe's memo of linearized set and state,
    partitioned by key), without this project's reductions: the baseline."""

    def __init__(self, history: History, model: str, timeout: float) -> None:
        self.spec = resolve(model)
        self.history = history
        self.deadline = time.perf_counter() + timeout

    def run(self) -> bool | None:
        for _, part in self.spec.partition(self.history.ops):
            self.items = _items(self.spec, part)
            self.entries = [(kind, i) for _, kind, i in _events(self.items)]
            self.rets = {i: pos for pos, (kind, i) in enumerate(self.entries) if kind == 1}
            self.cache: set[tuple[int, State]] = set()
            sys.setrecursionlimit(max(10_000, 4 * len(self.entries)))
            try:
                if not self.search(list(range(len(self.entries))), 0, self.spec.initial()):
                    return False
            except (_OutOfBudget, RecursionError):
                return None
        return True

    def search(self, alive: list[int], bits: int, state: State) -> bool:
        if time.perf_counter() > self.deadline:
            raise _OutOfBudget()
        if not any(self.entries[e][0] == 1 for e in alive):
            return True
        for e in alive:
            kind, i = self.entries[e]
            if kind == 1:
                return False
            for after in self.items[i].step(state):
                key = (bits | 1 << i, after)
                if key in self.cache:
                    continue
                self.cache.add(key)
                rest = [x for x in alive if x != e and x != self.rets.get(i)]
                if self.search(rest, bits | 1 << i, after):
                    return True
        return False


def verdict(valid: bool | None) -> str:
    return {True: "ok", False: "NOT linearizable", None: "gave up"}[valid]


def bench_linearizability(timeout: float) -> None:
    configs: list[tuple[ModelName, int, int, float, float]] = []
    for model in ("register", "kv"):
        for n in (100, 1_000, 5_000):
            configs.append((model, n, 4, 0.05, 0.2 if model == "register" else 0.0))
    # Where it stops being practical:
    configs += [
        ("register", 5_000, 16, 0.05, 0.2),
        ("register", 5_000, 32, 0.05, 0.2),
        ("register", 2_000, 8, 0.20, 0.2),
        ("register", 2_000, 16, 0.20, 0.2),
        ("kv", 5_000, 8, 0.05, 0.2),
        ("counter", 1_000, 4, 0.05, 0.0),
        ("counter", 2_000, 8, 0.05, 0.0),
        ("counter", 2_000, 8, 0.20, 0.0),
    ]
    rows: list[Sequence[object]] = []
    for model, n, processes, info, cas in configs:
        history = linearizable_history(
            random.Random(n + processes),
            model,
            ops=n,
            processes=processes,
            values=None,
            info=info,
            cas=cas,
        )
        ours_s, result = timed(partial(check, history, model, timeout=timeout), repeat=1)
        base_s, base = timed(PlainWGL(history, model, min(timeout, 10.0)).run, repeat=1)
        rows.append(
            (
                model,
                n,
                processes,
                f"{info:.0%}",
                f"{cas:.0%}",
                f"{ours_s:.3f}",
                result.explored,
                verdict(result.valid),
                f"{base_s:.3f}",
                verdict(base),
            )
        )
    table(
        f"linearizability (seconds; budget {timeout:g} s, baseline {min(timeout, 10.0):g} s)",
        (
            "model",
            "ops",
            "clients",
            "info",
            "cas",
            "check",
            "states",
            "verdict",
            "baseline: plain WGL",
            "baseline verdict",
        ),
        rows,
    )


def bench_shared_data(root: Path, timeout: float) -> None:
    if not root.is_dir():
        print(f"\n(no shared histories at {root}: skipped)")
        return
    runs = []
    total = time.perf_counter()
    for path, model, expected in shared_histories(root):
        history = load(path)
        initial = "" if model == "kv" else None
        seconds, result = timed(
            partial(check, history, model, initial=initial, timeout=timeout), repeat=1
        )
        runs.append((seconds, path.name, len(history), expected, result))
    total = time.perf_counter() - total
    agree = sum(1 for *_, expected, result in runs if result.valid is expected)
    largest = max(runs, key=lambda run: run[2])
    picked = [largest, *sorted(runs, key=lambda run: run[0])[-3:]]
    rows: list[Sequence[object]] = [
        (name, ops, "linearizable" if expected else "not", verdict(r.valid), ms(s), r.explored)
        for s, name, ops, expected, r in picked
    ]
    table(
        f"shared data: {agree}/{len(runs)} verdicts agree, all {len(runs)} in {total:.2f} s "
        "(the largest, then the three slowest; ms)",
        ("history", "ops", "recorded", "ours", "check", "states"),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/histories"))
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    bench_lost_writes()
    bench_linearizability(args.timeout)
    bench_shared_data(args.data, args.timeout)


if __name__ == "__main__":
    main()
