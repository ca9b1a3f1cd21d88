"""How fast the history checkers are: lost writes and availability on 1k-100k operations,
linearizability on 100-5000 operations (register, kv, counter; up to 32 clients), next to a
plain Wing & Gong / Lowe search (memo only, no reductions) measured in the same run;
counters in one pass; isolation of 1k-100k list-append transactions; porcupine's 50-client
key-value histories beside porcupine itself.

    python benchmarks/bench_checkers.py [--timeout 10] [--data /work/shared/data/histories]
        [--porcupine /path/to/porcupine-checkout]   (or DCFIRE_PORCUPINE)

Histories come from `pytest_dcfire.history.synthetic` (linearizable by construction, fixed
seeds), so every verdict printed should be "ok"; "gave up" means the budget ran out. The
shared data table checks the largest and the slowest histories of the shared data set.
Porcupine (Go) is not part of the project: given a checkout of it (its test data and `go`
on the PATH), its own benchmark of the same histories runs in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench_table import print_table

from pytest_dcfire.history import History, Op, check, check_isolation, load
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
        ("counter", 2_000, 16, 0.05, 0.0),
        ("counter", 2_000, 32, 0.05, 0.0),
    ]
    rows: list[Sequence[object]] = []
    print("\nlinearizability, row by row:", flush=True)
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
        # Each row as it is measured (the table comes at the end): a long run shows progress.
        print(
            f"  {model} {n} ops, {processes} clients, {info:.0%} info, {cas:.0%} cas: "
            f"{verdict(result.valid)} in {ours_s:.3f} s ({result.explored} states); "
            f"plain WGL {verdict(base)} in {base_s:.3f} s",
            flush=True,
        )
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


def bench_counters() -> None:
    rows: list[Sequence[object]] = []
    for n, processes in ((2_000, 8), (10_000, 16), (100_000, 32)):
        history = linearizable_history(
            random.Random(n), "counter", ops=n, processes=processes, values=None, info=0.05
        )
        history.ops  # noqa: B018 - sort once, outside the timings
        seconds, result = timed(history.counter, repeat=1)
        rows.append(
            (n, processes, f"{seconds:.3f}", len(result.reads), "ok" if result.ok else "NOT")
        )
    table(
        "counter bounds in one pass (seconds)",
        ("ops", "clients", "check", "reads", "verdict"),
        rows,
    )


def serial_transactions(n: int, seed: int) -> History:
    """`n` list-append transactions run one at a time on a dict (serializable), 1-4
    micro-operations each, about 20 transactions a key, times overlapping at random."""
    rng = random.Random(seed)
    keys = max(8, n // 20)
    store: dict[int, list[int]] = {}
    ops = []
    counter = 0
    for t in range(n):
        done: list[tuple[str, int, Any]] = []
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(keys)
            if rng.random() < 0.5:
                counter += 1
                store.setdefault(k, []).append(counter)
                done.append(("append", k, counter))
            else:
                done.append(("r", k, tuple(store.get(k, ()))))
        start = rng.random() * n
        invoked = tuple((f, k, None if f == "r" else v) for f, k, v in done)
        ops.append(Op("txn", invoked, invoke=start, complete=start + 5, result=tuple(done), id=t))
    return History(ops)


def bench_isolation() -> None:
    rows: list[Sequence[object]] = []
    for n in (1_000, 10_000, 100_000):
        history = serial_transactions(n, n)
        history.ops  # noqa: B018
        started = time.process_time()
        wall, result = timed(partial(check_isolation, history, "serializable"), repeat=1)
        cpu = time.process_time() - started
        rows.append((n, f"{wall:.2f}", f"{cpu:.2f}", result.edges, "ok" if result.ok else "NOT"))
    table(
        "isolation (serializable) of list-append transactions (seconds)",
        ("transactions", "check (wall)", "check (cpu)", "dependencies", "verdict"),
        rows,
    )


def porcupine_times(checkout: Path | None) -> dict[str, tuple[float, float]]:
    """Porcupine's own benchmark of its 50-client kv histories, built from its checkout
    with the Go toolchain found here (the test binary goes to a temporary directory):
    (wall, cpu) seconds per check. CPU counts every thread (it checks keys in parallel);
    its benchmark runs each check b.N + 1 times. {} if the checkout or Go is missing."""
    go = shutil.which("go")
    if checkout is None or go is None or not (checkout / "porcupine_test.go").exists():
        return {}
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env.setdefault("GOPROXY", "off")
    env.setdefault("GOCACHE", str(Path(tempfile.gettempdir()) / "dcfire-go-cache"))
    runs = 3
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        binary = str(Path(tmp) / "porcupine.test")
        try:
            subprocess.run(
                [go, "test", "-c", "-o", binary, "."],
                cwd=checkout,
                env=env,
                capture_output=True,
                timeout=600,
                check=True,
            )
            for name in ("Ok", "Bad"):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                out = subprocess.run(
                    [
                        binary,
                        "-test.run",
                        "^$",
                        "-test.bench",
                        f"Kv50Clients{name}$",
                        "-test.benchtime",
                        f"{runs}x",
                    ],
                    cwd=checkout,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                ).stdout
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                found = re.search(r"\s(\d+) ns/op", out)
                if found:
                    times[f"c50-{name.lower()}"] = (int(found.group(1)) / 1e9, cpu / (runs + 1))
        except (OSError, subprocess.SubprocessError):
            return times
    return times


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (the checker's workers)."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(own + children.ru_utime + children.ru_stime)


def bench_porcupine(checkout: Path | None, timeout: float) -> None:
    data = checkout / "test_data" / "kv" if checkout is not None else None
    if data is None or not data.is_dir():
        print("\n(no porcupine checkout: --porcupine or DCFIRE_PORCUPINE; c50 skipped)")
        return
    theirs = porcupine_times(checkout)
    rows: list[Sequence[object]] = []
    for name in ("c50-ok", "c50-bad"):
        history = load(data / f"{name}.txt")
        cpu = cpu_now()
        verdict_s, result = timed(
            partial(check, history, "kv", initial="", timeout=timeout, explain=False), repeat=3
        )
        cpu = (cpu_now() - cpu) / 3
        explained_s, _ = timed(partial(check, history, "kv", initial="", timeout=timeout), repeat=1)
        serial_s, _ = timed(
            partial(check, history, "kv", initial="", timeout=timeout, explain=False, workers=1),
            repeat=1,
        )
        other = theirs.get(name)
        rows.append(
            (
                name,
                len(history),
                verdict(result.valid),
                f"{verdict_s:.3f}",
                f"{cpu:.3f}",
                f"{serial_s:.3f}",
                f"{explained_s:.3f}",
                f"{other[0]:.3f}" if other else "-",
                f"{other[1]:.3f}" if other else "-",
                f"{verdict_s / other[0]:.1f}x" if other else "-",
                f"{cpu / other[1]:.1f}x" if other else "-",
            )
        )
    table(
        f"porcupine's 50-client kv histories (seconds, verdict median of 3; budget {timeout:g} s)",
        (
            "history",
            "ops",
            "verdict",
            "check (verdict only)",
            "cpu",
            "one process",
            "with explanation",
            "porcupine (go, same run)",
            "porcupine cpu",
            "ratio (wall)",
            "ratio (cpu)",
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
    parser.add_argument(
        "--porcupine",
        type=Path,
        default=Path(os.environ["DCFIRE_PORCUPINE"])
        if os.environ.get("DCFIRE_PORCUPINE")
        else None,
    )
    parser.add_argument("--only", help="run only the sections whose name contains this")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    sections: list[tuple[str, Callable[[], None]]] = [
        ("lost_writes", bench_lost_writes),
        ("linearizability", partial(bench_linearizability, args.timeout)),
        ("counters", bench_counters),
        ("isolation", bench_isolation),
        ("porcupine", partial(bench_porcupine, args.porcupine, args.timeout)),
        ("shared", partial(bench_shared_data, args.data, args.timeout)),
    ]
    for name, run in sections:
        if not args.only or args.only in name:
            run()


if __name__ == "__main__":
    main()
