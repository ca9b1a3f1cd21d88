"""The workload with real threads and a real clock: numbering, pairing, classification,
declarations, and a prompt, bounded stop whatever the operation does."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import defaultdict
from typing import Any, cast

import pytest

from pytest_dcfire.history import (
    Fail,
    History,
    Indeterminate,
    Op,
    Workload,
    WorkloadError,
    declare,
)


def test_every_call_is_numbered_once_and_recorded_with_its_interval() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def op(n: int) -> str:
        with lock:
            seen.append(n)
        time.sleep(0.001)
        return f"ok {n}"

    started = time.monotonic()
    with Workload(op, threads=4, interval=0, limit=200) as workload:
        assert workload.join(timeout=10)
    history = workload.history
    assert sorted(seen) == list(range(1, 201))
    assert sorted(o.id for o in history.ops) == list(range(1, 201))
    by_process: dict[object, list[int]] = defaultdict(list)
    for o in history.ops:
        assert o.type == "ok" and o.f == "write" and o.value == o.id and o.result == f"ok {o.id}"
        assert o.complete is not None and started <= o.invoke <= o.complete <= time.monotonic()
        by_process[o.process].append(o.id)
    assert set(by_process) == {0, 1, 2, 3}
    for ids in by_process.values():  # a thread's calls are sequential and take rising numbers
        assert ids == sorted(ids)
    for process in by_process:
        calls = [o for o in history.ops if o.process == process]
        for before, after in itertools.pairwise(calls):
            assert before.complete is not None and before.complete <= after.invoke


def test_outcomes_are_classified() -> None:
    def op(n: int) -> int:
        kind = n % 6
        if kind == 1:
            raise ConnectionRefusedError("refused")
        if kind == 2:
            raise TimeoutError()
        if kind == 3:
            raise Fail("409 conflict")
        if kind == 4:
            raise Indeterminate("sent, no answer")
        if kind == 5:
            raise socket.gaierror("no such host")
        return n

    with Workload(op, threads=2, interval=0, limit=60) as workload:
        assert workload.join(timeout=10)
    outcome = {o.id: (o.type, o.error) for o in workload.history.ops}
    assert outcome[6] == ("ok", None)
    assert outcome[1] == ("fail", "ConnectionRefusedError: refused")
    assert outcome[2] == ("info", "TimeoutError")
    assert outcome[3] == ("fail", "Fail: 409 conflict")
    assert outcome[4] == ("info", "Indeterminate: sent, no answer")
    assert outcome[5] == ("fail", "gaierror: no such host")


def test_urllib_wrapped_refusals_are_failures_and_its_timeouts_are_not() -> None:
    """urllib.request.urlopen (the README's first client) wraps a refused connection in a
    URLError; it was recorded as indeterminate."""
    import urllib.error

    def op(n: int) -> None:
        if n % 3 == 1:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        if n % 3 == 2:
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        raise urllib.error.URLError(TimeoutError("timed out"))

    with Workload(op, interval=0, limit=9) as workload:
        assert workload.join(timeout=10)
    types = {o.id % 3: o.type for o in workload.history.ops}
    assert types == {1: "fail", 2: "fail", 0: "info"}


def test_classify_decides_first_and_none_falls_back() -> None:
    def op(n: int) -> None:
        raise (TimeoutError if n % 2 else ConnectionRefusedError)()

    def classify(exc: BaseException) -> str | None:
        return "fail" if isinstance(exc, TimeoutError) else None

    with Workload(op, interval=0, limit=10, classify=classify) as workload:
        workload.join(timeout=10)
    assert {o.type for o in workload.history.ops} == {"fail"}


def test_a_read_workload_and_declared_operations() -> None:
    state = {"k1": 0}

    def reads(n: int) -> int:
        return state["k1"]

    with Workload(reads, kind="read", key="k1", interval=0, limit=3) as workload:
        workload.join(timeout=10)
    assert {(o.f, o.key, o.value, o.result) for o in workload.history.ops} == {
        ("read", "k1", None, 0)
    }

    def mixed(n: int) -> object:
        if n % 3 == 0:
            declare("read", key=f"k{n % 2}")
            return [n, "seen"]
        if n % 3 == 1:
            declare("cas", key="c", value=(n - 1, n))
            raise TimeoutError("no answer")
        declare("append")
        return None

    with Workload(mixed, threads=3, interval=0, limit=9, key="default") as workload:
        workload.join(timeout=10)
    ops = {o.id: o for o in workload.history.ops}
    assert (ops[3].f, ops[3].key, ops[3].value, ops[3].result) == ("read", "k1", None, (3, "seen"))
    assert (ops[4].f, ops[4].key, ops[4].value, ops[4].type) == ("cas", "c", (3, 4), "info")
    assert (ops[5].f, ops[5].key, ops[5].value) == ("append", "default", 5)


def test_declare_outside_an_operation_is_an_error() -> None:
    with pytest.raises(WorkloadError, match="only valid inside a workload operation"):
        declare("read")


def test_interval_paces_each_thread() -> None:
    with Workload(lambda n: n, threads=1, interval=0.05) as workload:
        time.sleep(0.32)
    assert 4 <= len(workload.history) <= 9


def test_exit_is_prompt_and_bounded_when_an_operation_hangs() -> None:
    release = threading.Event()

    def op(n: int) -> int:
        if n >= 3:
            release.wait(30)  # a blackholed connection
        return n

    workload = Workload(op, threads=2, interval=0.01, stop_timeout=0.2)
    with workload:
        time.sleep(0.2)
        started = time.monotonic()
    took = time.monotonic() - started
    assert took < 1.0
    hung = [o for o in workload.history.ops if o.complete is None]
    assert len(hung) == 2 and workload.abandoned == 2
    assert {o.type for o in hung} == {"info"}
    assert all("still running 0.2 s after the workload stopped" in (o.error or "") for o in hung)
    recorded = len(workload.history)
    release.set()
    for worker in workload._workers:
        worker.join(5)
    assert len(workload.history) == recorded and workload.late == 2
    assert not workload.running


def test_a_stop_never_loses_an_invocation() -> None:
    """Every call that op saw is in the history, even those racing the stop."""
    seen: set[int] = set()

    def op(n: int) -> None:
        seen.add(n)

    for _ in range(20):
        seen.clear()
        with Workload(op, threads=4, interval=0) as workload:
            time.sleep(0.005)
        assert {o.id for o in workload.history.ops} == seen


def test_an_exception_in_the_test_body_stops_the_workload() -> None:
    workload = Workload(lambda n: n, threads=2, interval=0.001)
    with pytest.raises(RuntimeError, match="body failed"), workload:
        raise RuntimeError("body failed")
    assert all(not worker.is_alive() for worker in workload._workers)


def test_a_broken_classify_stops_the_workload_and_is_raised() -> None:
    def classify(exc: BaseException) -> str:
        return "maybe"

    def op(n: int) -> None:
        raise TimeoutError()

    with (
        pytest.raises(WorkloadError, match="classify\\(TimeoutError\\) returned 'maybe'"),
        Workload(op, interval=0, classify=classify) as workload,
    ):
        time.sleep(0.1)
    assert len(workload.history) >= 1 and workload.history.ops[0].type == "info"


def test_pytest_fail_inside_an_operation_reaches_pytest() -> None:
    def op(n: int) -> None:
        pytest.fail("the client saw garbage")

    with (
        pytest.raises(pytest.fail.Exception, match="the client saw garbage"),
        Workload(op, interval=0),
    ):
        time.sleep(0.1)


def test_marks_go_into_the_history_and_it_round_trips() -> None:
    with Workload(lambda n: {"n": n}, threads=2, interval=0.01) as workload:
        time.sleep(0.05)
        workload.mark("ignite", label="pangyo")
        time.sleep(0.05)
        workload.mark("restore")
        time.sleep(0.05)
    history = workload.history
    assert [m.name for m in history.marks] == ["ignite", "restore"]
    assert History.loads_jsonl(history.dumps_jsonl()) == history
    assert history.availability().ignited == history.marks[0].time


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threads": 0}, "threads must be an integer >= 1, got 0"),
        ({"interval": -1}, "interval must be >= 0 seconds"),
        ({"stop_timeout": -1}, "stop_timeout must be >= 0"),
        ({"kind": ""}, "kind must be an operation name"),
        ({"limit": -1}, "limit must be >= 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        Workload(lambda n: n, **kwargs)  # type: ignore[arg-type]


def test_a_workload_runs_once() -> None:
    workload = Workload(lambda n: n, limit=1)
    with workload:
        workload.join(5)
    with pytest.raises(WorkloadError, match="was already started"):
        workload.start()
    assert "stopped" in repr(workload)


def test_end_to_end_a_store_that_loses_writes_during_an_outage() -> None:
    """A fake store goes dark for a while: calls time out, and writes acknowledged just
    before the outage are lost (as if the primary burned before replicating them)."""
    store: list[int] = []
    state = {"dark": False, "unreplicated": 0}
    lock = threading.Lock()

    def write(n: int) -> None:
        with lock:
            if state["dark"]:
                raise TimeoutError("no answer")
            store.append(n)

    with Workload(write, threads=2, interval=0.005) as workload:
        time.sleep(0.1)
        with lock:
            state["unreplicated"] = len(store)
        time.sleep(0.05)
        with lock:  # the fire: what was written since the last replication is gone
            state["dark"] = True
            del store[state["unreplicated"] :]
        workload.mark("ignite")
        time.sleep(0.15)
        with lock:
            state["dark"] = False
        workload.mark("restore")
        time.sleep(0.1)
    history = workload.history
    lost = history.lost_writes(store)
    assert lost.lost and not lost.phantoms and not lost.revived
    report = history.availability(lost=lost)
    assert report.rto is not None and 0.1 <= report.rto < 2.0
    assert report.rpo is not None and 0.0 < report.rpo < 1.0
    assert report.outages and report.longest_outage is not None
    assert report.longest_outage.duration >= 0.1
    assert "LOST" in str(lost) and "RTO" in str(report)
    # The history as a register: a read during the outage that sees the last replicated
    # write, after later writes were acknowledged, is a violation naming the lost write.
    survivor = store[state["unreplicated"] - 1]
    ignited = history.marks_named("ignite")[0].time
    read = Op("read", None, invoke=ignited, complete=ignited + 0.001, result=survivor, id=0)
    history.append(read)
    verdict = history.linearizable("register")
    assert verdict.valid is False and verdict.culprit == read
    last_lost = max(lost.lost, key=lambda op: op.complete or 0.0)
    assert [op.id for op in verdict.counterexample] == [last_lost.id, read.id]


class _Store:
    """A list-append store: `atomic` runs each transaction under one lock (serializable);
    otherwise each micro-operation takes the lock on its own (read committed at best)."""

    def __init__(self, atomic: bool) -> None:
        self.lists: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()
        self.atomic = atomic

    def run(self, micro: list[list[object]]) -> list[list[object]]:
        if self.atomic:
            with self.lock:
                return self._apply(micro)
        for m in micro:
            self._apply([m])
            time.sleep(0.0005)  # let other transactions in between
        return micro

    def _apply(self, micro: list[list[object]]) -> list[list[object]]:
        for m in micro:
            if m[0] == "append":
                self.lists[str(m[1])].append(int(m[2]))  # type: ignore[call-overload]
            else:
                m[2] = list(self.lists[str(m[1])])
        return micro


@pytest.mark.parametrize("atomic", [True, False])
def test_a_transaction_workload_is_checked_for_isolation(atomic: bool) -> None:
    from pytest_dcfire.history import transaction

    store = _Store(atomic)

    def op(n: int) -> list[list[object]]:
        # Write skew: read one key, append to the other.
        a, b = ("x", "y") if n % 2 else ("y", "x")
        micro = transaction([("r", a), ("append", b, n), ("r", "x"), ("r", "y")])
        return store.run(micro)

    with Workload(op, threads=8, interval=0, limit=400) as workload:
        assert workload.join(timeout=30)
    history = workload.history
    assert {o.f for o in history.ops} == {"txn"}
    first = cast("tuple[tuple[Any, ...], ...]", history.ops[0].value)  # micro-ops, as recorded
    assert first[0] == ("r", first[0][1], None)
    result = history.isolation("serializable")
    if atomic:
        assert result.ok, str(result)
    else:
        assert any(a.cycle for a in result.anomalies), str(result)


def test_a_transaction_must_be_made_of_appends_and_reads() -> None:
    from pytest_dcfire.history import transaction

    def op(n: int) -> None:
        transaction([("write", "x", n)])

    with (
        pytest.raises(WorkloadError, match=r"\('write', 'x', 1\): valid are"),
        Workload(op, threads=1, interval=0, limit=1) as workload,
    ):
        workload.join(timeout=5)
