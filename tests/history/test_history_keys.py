"""Checking the keys of a history: easier keys first, the first failing key settles the
verdict (or every failing key, when asked), the hard ones in worker processes; many clients;
and porcupine's 50-client key-value histories when they are at hand."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_dcfire.history import History, Op, check, load, schedule
from pytest_dcfire.history.synthetic import ModelName, linearizable_history

MANY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _kv(keys: int, bad: set[int], seed: int = 1) -> list[Op]:
    """`keys` keys of 60 operations from 6 clients each; the keys in `bad` end with a read
    of a value never written."""
    ops: list[Op] = []
    for k in range(keys):
        history = linearizable_history(
            random.Random(seed + k), "kv", ops=60, processes=6, keys=1, values=None
        )
        for o in history.ops:
            ops.append(replace(o, key=f"k{k}", id=len(ops)))
        if k in bad:
            end = max(o.complete or o.invoke for o in ops) + 1
            ops.append(
                Op(
                    "read",
                    None,
                    invoke=end,
                    complete=end + 1,
                    key=f"k{k}",
                    result="<never>",
                    id=len(ops),
                )
            )
    return ops


def test_a_verdict_stops_at_the_first_failing_key_and_all_keys_names_every_one() -> None:
    ops = _kv(8, bad={2, 5, 6})
    first = check(ops, "kv")
    assert first.valid is False and len(first.failing) == 1
    assert first.failing[0] in {"k2", "k5", "k6"} and first.counterexample
    every = check(ops, "kv", all_keys=True)
    assert every.valid is False and set(every.failing) == {"k2", "k5", "k6"}
    assert check(_kv(8, bad=set()), "kv").valid is True


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_reach_the_same_verdicts(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "WARMUP", 0)  # hand every key to the workers at once
    ops = _kv(6, bad={1, 4})
    every = check(ops, "kv", all_keys=True, workers=workers)
    assert every.valid is False and set(every.failing) == {"k1", "k4"}
    assert check(ops, "kv", workers=workers).valid is False
    assert check(_kv(6, bad=set()), "kv", workers=workers).valid is True


def test_a_key_that_fails_settles_the_verdict_even_when_others_run_out_of_budget() -> None:
    ops = _kv(4, bad={3})
    result = check(ops, "kv", all_keys=True, max_states=10**9)
    assert result.valid is False and result.undecided == ()
    long = linearizable_history(random.Random(3), "kv", ops=3000, processes=8, values=None)
    starved = check(long, "kv", max_states=300)
    assert starved.valid is None and "explored more than 300 states" in str(starved)


def test_an_error_in_a_worker_is_raised_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_dcfire.history import HistoryError

    monkeypatch.setattr(schedule, "WARMUP", 0)
    ops = [
        *_kv(2, bad=set()),
        Op("cas", ("a",), invoke=0, complete=1, key="k1", id=999),  # not a pair
    ]
    with pytest.raises(HistoryError, match="a cas needs value"):
        check(ops, "kv", workers=2)


many_models: st.SearchStrategy[ModelName] = st.sampled_from(("register", "kv"))


@MANY
@given(
    seed=st.integers(0, 2**32),
    model=many_models,
    size=st.integers(50, 400),
    processes=st.integers(16, 32),
    info=st.sampled_from([0.0, 0.05]),
)
def test_many_clients_linearizable_by_construction_pass(
    seed: int, model: ModelName, size: int, processes: int, info: float
) -> None:
    rng = random.Random(seed)
    history = linearizable_history(
        rng, model, ops=size, processes=processes, values=None, info=info
    )
    result = check(history, model, timeout=60, explain=False)
    assert result.valid is True, str(result)


@MANY
@given(
    seed=st.integers(0, 2**32),
    model=many_models,
    size=st.integers(50, 400),
    processes=st.integers(16, 32),
)
def test_many_clients_a_read_nobody_could_have_seen_is_caught(
    seed: int, model: ModelName, size: int, processes: int
) -> None:
    rng = random.Random(seed)
    history = linearizable_history(rng, model, ops=size, processes=processes, values=None)
    reads = [o for o in history.ops if o.f == "read" and o.type == "ok"]
    assume(reads)
    victim = rng.choice(reads)
    impossible = "<never written>" if model == "kv" else -1
    mutated = History([replace(o, result=impossible) if o is victim else o for o in history])
    result = check(mutated, model, timeout=60)
    assert result.valid is False, str(result)
    assert victim.id in {o.id for o in result.counterexample}


PORCUPINE = os.environ.get("DCFIRE_PORCUPINE_KV", "")


@pytest.mark.parametrize("name", ["c50-ok", "c50-bad"])
def test_porcupine_fifty_client_histories_are_decided(name: str) -> None:
    """Porcupine's test data is not part of the project: point DCFIRE_PORCUPINE_KV at its
    test_data/kv directory to run this."""
    path = Path(PORCUPINE) / f"{name}.txt"
    if not PORCUPINE or not path.exists():
        pytest.skip("set DCFIRE_PORCUPINE_KV to porcupine's test_data/kv to run this")
    result = check(load(path), "kv", initial="", timeout=120)
    assert result.valid is name.endswith("-ok"), str(result)
