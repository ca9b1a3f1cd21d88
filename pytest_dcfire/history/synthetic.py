"""Random histories that are linearizable by construction, for tests and benchmarks.

Each operation gets a random interval and a linearization point inside it; applying the
operations to a real register / key-value map / counter in the order of those points gives
the results, so the history has a linearization whatever the interleaving.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from pytest_dcfire.history.history import History
from pytest_dcfire.history.model import Op, OpType, Value

ModelName = Literal["register", "kv", "counter"]


@dataclass(frozen=True)
class Planned:
    """An operation before its outcome is known, with its chosen linearization point."""

    process: int
    invoke: float
    point: float
    complete: float
    f: str
    key: Value
    value: Value
    outcome: OpType  # ok; fail (did not happen); info (happened or not, see `applied`)
    applied: bool


def linearizable_history(
    rng: random.Random,
    model: ModelName = "register",
    *,
    ops: int = 100,
    processes: int = 5,
    keys: int = 3,
    values: int | None = 5,
    reads: float = 0.5,
    cas: float = 0.2,
    info: float = 0.05,
    fail: float = 0.05,
    mean_gap: float = 1.0,
    mean_latency: float = 1.0,
) -> History:
    """A random history of `model` that is linearizable by construction.

    `values` is how many distinct values writes draw from (None: every write a new value,
    1, 2, 3, ...). `info` and `fail` are the shares of indeterminate and failed operations;
    an info operation took effect or not at random. Times are arbitrary units.
    """
    clock = [0.0] * processes
    planned: list[Planned] = []
    fresh = 0
    for _ in range(ops):
        p = rng.randrange(processes)
        invoke = clock[p] + mean_gap * _spread(rng)
        point = invoke + mean_latency * _spread(rng)
        complete = point + mean_latency * _spread(rng)
        clock[p] = complete
        key: Value = f"k{rng.randrange(keys)}" if model == "kv" else None
        roll = rng.random()
        value: Value
        if roll < reads:
            f, value = "read", None
        elif model == "counter":
            f, value = "add", rng.randint(1, 3)
        else:
            fresh += 1
            new: Value = fresh if values is None else rng.randrange(values)
            expected: Value = rng.randrange(values) if values is not None else rng.randint(0, fresh)
            if model == "kv":  # strings, so that appends and writes mix
                new, expected = f"<{new}>", f"<{expected}>"
            if roll < reads + cas:
                f, value = "cas", (expected, new)
            elif model == "kv" and rng.random() < 0.5:
                f, value = "append", new
            else:
                f, value = "write", new
        outcome_roll = rng.random()
        outcome: OpType = (
            "info" if outcome_roll < info else ("fail" if outcome_roll < info + fail else "ok")
        )
        applied = outcome == "ok" or (outcome == "info" and rng.random() < 0.5)
        planned.append(Planned(p, invoke, point, complete, f, key, value, outcome, applied))
    return realize(planned, model)


def _spread(rng: random.Random) -> float:
    """Exponential with mean about 1, floored (equal times would count as overlapping, see
    `check`) and capped (a generator of extreme draws must not make infinite times)."""
    return 0.01 + min(rng.expovariate(1.0), 20.0)


def realize(planned: list[Planned], model: ModelName) -> History:
    """Apply the planned operations in the order of their linearization points; reads see
    the state at their point, a cas that finds another value returns False."""
    initial: Any = 0 if model == "counter" else None
    state: dict[Value, Any] = {}
    done: list[Op] = []
    order = sorted(range(len(planned)), key=lambda i: planned[i].point)
    for n in order:
        plan = planned[n]
        current = state.get(plan.key, initial)
        result: Value = None
        if plan.applied:
            if plan.f == "read":
                result = current
            elif plan.f == "write":
                state[plan.key] = plan.value
            elif plan.f == "add":
                assert isinstance(plan.value, int)
                state[plan.key] = current + plan.value
            elif plan.f == "append":
                assert isinstance(plan.value, str)
                state[plan.key] = (current or "") + plan.value
            elif plan.f == "cas":
                assert isinstance(plan.value, tuple)
                expected, new = plan.value
                result = current == expected
                if result:
                    state[plan.key] = new
        done.append(
            Op(
                f=plan.f,
                value=plan.value,
                type=plan.outcome,
                invoke=plan.invoke,
                complete=plan.complete,
                key=plan.key,
                result=result if plan.outcome == "ok" else None,
                process=plan.process,
                id=n,
            )
        )
    return History(done)
