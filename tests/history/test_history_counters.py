"""Counters and sets in one pass: the bounds a counter's reads must lie in, a set's lost,
unexpected and vanished elements; by construction correct histories of up to 32 clients
pass, mutated ones are caught, and they agree with the linearizability search where that
decides."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_dcfire.history import History, HistoryError, Op, check, check_counter, check_set
from pytest_dcfire.history.synthetic import linearizable_history

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def add(delta: int, start: float, end: float | None, type: str = "ok", id: int = -1) -> Op:
    return Op("add", delta, type=type, invoke=start, complete=end, id=id)  # type: ignore[arg-type]


def read(value: object, start: float, end: float, id: int = -1, f: str = "read") -> Op:
    return Op(f, None, invoke=start, complete=end, result=value, id=id)  # type: ignore[arg-type]


def test_a_counter_read_lies_between_what_must_and_what_may_have_been_added() -> None:
    ops = [
        add(1, 0, 1),
        add(5, 2, 10),  # concurrent with the read: may or may not count
        add(2, 3, None, type="info"),  # may have happened
        add(7, 0, 1, type="fail"),  # did not happen
        read(1, 4, 5, id=10),
        read(8, 4, 5, id=11),
        read(9, 4, 5, id=12),  # more than could have been added
        read(0, 4, 5, id=13),  # less than was acknowledged before it began
    ]
    result = check_counter(ops)
    bounds = {r.op.id: (r.lower, r.upper) for r in result.reads}
    assert bounds[10] == (1, 8)
    assert {r.op.id for r in result.errors} == {12, 13} and not result.ok
    assert "must lie in [1, 8]" in str(result)
    assert History(ops[:5]).counter().ok


def test_negative_adds_widen_the_bounds_the_other_way() -> None:
    ops = [add(10, 0, 1), add(-3, 2, 6), read(7, 3, 4, id=1), read(10, 3, 4, id=2)]
    assert check_counter(ops).ok
    assert not check_counter([*ops, read(6, 3, 4, id=3)]).ok


def test_a_counter_read_of_something_else_is_an_error_naming_it() -> None:
    with pytest.raises(HistoryError, match=r"#4 \(read\): a counter needs a number, got 'x'"):
        check_counter([read("x", 0, 1, id=4)])


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(1, 2000),
    processes=st.integers(1, 32),
    info=st.sampled_from([0.0, 0.1]),
)
def test_counters_correct_by_construction_pass_and_a_changed_read_is_caught(
    seed: int, size: int, processes: int, info: float
) -> None:
    rng = random.Random(seed)
    history = linearizable_history(rng, "counter", ops=size, processes=processes, info=info)
    result = history.counter()
    assert result.ok, str(result)
    if result.reads:
        victim = rng.choice(result.reads)
        wrong = victim.upper + 1 if rng.random() < 0.5 else victim.lower - 1
        mutated = History([replace(o, result=wrong) if o is victim.op else o for o in history.ops])
        assert {r.op.id for r in mutated.counter().errors} == {victim.op.id}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(1, 30), processes=st.integers(1, 4))
def test_an_out_of_bounds_read_is_never_linearizable(seed: int, size: int, processes: int) -> None:
    """The bounds are necessary: whatever they reject, the search rejects too."""
    rng = random.Random(seed)
    history = linearizable_history(rng, "counter", ops=size, processes=processes)
    reads = [o for o in history.ops if o.f == "read" and o.type == "ok"]
    if not reads:
        return
    victim = rng.choice(reads)
    mutated = History(
        [
            replace(o, result=int(cast(int, o.result)) + rng.choice([-3, -1, 1, 3]))
            if o is victim
            else o
            for o in history.ops
        ]
    )
    if not mutated.counter().ok:
        assert check(mutated, "counter", timeout=30).valid is False


def sadd(value: int, start: float, end: float | None, type: str = "ok", id: int = -1) -> Op:
    return Op("add", value, type=type, invoke=start, complete=end, id=id)  # type: ignore[arg-type]


def test_a_set_loses_an_acknowledged_element_and_shows_one_nobody_added() -> None:
    ops = [
        sadd(1, 0, 1, id=1),
        sadd(2, 0, 1, id=2),
        sadd(3, 0, None, type="info", id=3),
        sadd(4, 0, 1, type="fail", id=4),
        sadd(5, 6, 7, id=5),  # concurrent with the final read: may be missing
        read((1, 2), 2, 3, id=10),
        read((1, 3, 4, 9), 6, 8, id=11),
    ]
    result = check_set(ops)
    assert result.final is not None and result.final.id == 11
    assert [op.id for op in result.lost] == [2]
    assert {(v, r.id) for v, r in result.unexpected} == {(4, 11), (9, 11)}
    assert {(v, r.id) for v, r in result.vanished} == {(2, 11)}
    assert [op.id for op in result.recovered] == [3]
    text = str(result)
    assert "lost (1" in text and "unexpected 9" in text and "2 vanished" in text
    good = History([*ops[:3], sadd(5, 6, 7, id=5), read((1, 2), 2, 3), read((1, 2, 3), 6, 8)])
    assert good.set().ok


def test_a_set_read_that_is_not_a_list_is_an_error() -> None:
    with pytest.raises(HistoryError, match=r"#7 \(read\): a set read needs a list"):
        check_set([read(3, 0, 1, id=7)])


@SETTINGS
@given(seed=st.integers(0, 2**32), size=st.integers(1, 3000), processes=st.integers(1, 32))
def test_sets_correct_by_construction_pass_and_a_dropped_element_is_caught(
    seed: int, size: int, processes: int
) -> None:
    rng = random.Random(seed)
    ops: list[Op] = []
    present: list[int] = []
    clock = 0.0
    for k in range(size):
        clock += rng.random()
        end = clock + rng.random() * processes
        outcome = rng.choices(["ok", "info", "fail"], [90, 5, 5])[0]
        ops.append(sadd(k, clock, None if outcome == "info" else end, type=outcome, id=k))
        if outcome == "ok" or (outcome == "info" and rng.random() < 0.5):
            present.append(k)
    final = read(tuple(present), clock + processes + 1, clock + processes + 2, id=size)
    assert check_set([*ops, final]).ok
    acknowledged = [k for k in present if ops[k].type == "ok"]
    if acknowledged:
        dropped = rng.choice(acknowledged)
        lossy = read(tuple(k for k in present if k != dropped), final.invoke, final.complete or 0)
        assert [op.value for op in check_set([*ops, lossy]).lost] == [dropped]
