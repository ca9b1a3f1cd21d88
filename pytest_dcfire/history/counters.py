"""Counters and sets, checked in one pass (after a sort) instead of a search.

A counter's read is right when it lies between what must have been added by then (adds
acknowledged before the read began) and what may have been (adds invoked before it ended,
acknowledged or not); a negative add swaps its part. A set's reads must hold every element
acknowledged before they began (else it was lost), nothing nobody tried to add (unexpected),
and nothing seen earlier may vanish later. These are the checks Jepsen runs on counters and
sets: weaker than linearizability (two reads may disagree on the order of concurrent adds)
but linear, so they decide histories of any size and any number of clients.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from pytest_dcfire.history.model import READ_FS, BaseHistory, HistoryError, Op, Value, hashable

#: Operation names that add to a counter or a set.
ADD_FS = frozenset({"add", "increment", "incr"})


def _history(history: BaseHistory | Iterable[Op]) -> BaseHistory:
    return history if isinstance(history, BaseHistory) else BaseHistory(history)


def _number(op: Op, value: Value) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HistoryError(f"operation #{op.id} ({op.f}): a counter needs a number, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterRead:
    """One read and the bounds it had to lie in."""

    op: Op
    lower: float
    upper: float

    @property
    def ok(self) -> bool:
        value = self.op.result
        return isinstance(value, (int, float)) and self.lower <= value <= self.upper


@dataclass(frozen=True)
class CounterCheck:
    """The reads of a counter history; `errors` are those outside their bounds."""

    reads: tuple[CounterRead, ...]
    adds: int
    origin: float = 0.0

    @property
    def errors(self) -> tuple[CounterRead, ...]:
        return tuple(read for read in self.reads if not read.ok)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        head = f"counter: {len(self.reads)} reads, {self.adds} adds"
        errors = self.errors
        if not errors:
            return head + ": every read within its bounds"
        lines = [head + f": {len(errors)} reads out of bounds"]
        for read in errors[:10]:
            lines.append(
                f"  {read.op.describe(self.origin)}: must lie in "
                f"[{read.lower:g}, {read.upper:g}] (acknowledged adds before it began; "
                "every add invoked before it ended)"
            )
        if len(errors) > 10:
            lines.append(f"  and {len(errors) - 10} more")
        return "\n".join(lines)


def check_counter(history: BaseHistory | Iterable[Op], initial: float = 0) -> CounterCheck:
    """Check every ok read of a counter (`add`/`increment` with a delta, default 1;
    `read`) against its bounds. Failed adds did not happen; info adds may have."""
    hist = _history(history)
    adds: list[tuple[Op, float]] = []
    for op in hist.ops:
        if op.f in ADD_FS and op.type != "fail":
            adds.append((op, _number(op, 1 if op.value is None else op.value)))
    # Acknowledged adds by completion; all that may have happened by invocation.
    done = sorted((op.complete or 0.0, delta) for op, delta in adds if op.type == "ok")
    begun = sorted((op.invoke, delta) for op, delta in adds)
    done_at = [t for t, _ in done]
    begun_at = [t for t, _ in begun]
    done_up = [0.0, *accumulate(max(0.0, d) for _, d in done)]
    done_down = [0.0, *accumulate(min(0.0, d) for _, d in done)]
    begun_up = [0.0, *accumulate(max(0.0, d) for _, d in begun)]
    begun_down = [0.0, *accumulate(min(0.0, d) for _, d in begun)]
    reads = []
    for op in hist.ops:
        if op.f not in READ_FS or op.type != "ok":
            continue
        _number(op, op.result)
        certain = bisect_left(done_at, op.invoke)  # completed strictly before it began
        possible = bisect_right(begun_at, op.complete or op.invoke)
        lower = initial + done_up[certain] + begun_down[possible]
        upper = initial + begun_up[possible] + done_down[certain]
        reads.append(CounterRead(op, lower, upper))
    return CounterCheck(tuple(reads), len(adds), hist.origin)


# ---------------------------------------------------------------------------------------
# Sets
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetCheck:
    """What the reads of a set say about its adds.

    `lost`: acknowledged adds missing from the final read although they completed before it
    began. `unexpected`: elements read that no add had been invoked for by then (a failed
    add counts as not invoked). `vanished`: (element, read) where a read began after another
    read had returned the element, and lacks it. `recovered`: info adds that are present."""

    final: Op | None
    lost: tuple[Op, ...]
    unexpected: tuple[tuple[Value, Op], ...]
    vanished: tuple[tuple[Value, Op], ...]
    recovered: tuple[Op, ...]
    adds: int
    reads: int
    origin: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexpected or self.vanished)

    def __str__(self) -> str:
        o = self.origin
        head = f"set: {self.adds} adds, {self.reads} reads"
        if self.final is None:
            return head + ": no successful read to check against"
        lines = [head + (": ok" if self.ok else ": NOT ok")]
        if self.lost:
            shown = ", ".join(repr(op.value) for op in self.lost[:10])
            lines.append(
                f"  lost ({len(self.lost)}, acknowledged, absent from the final read): {shown}"
            )
        for value, read in self.unexpected[:10]:
            lines.append(f"  unexpected {value!r} (never added) in {read.describe(o)}")
        for value, read in self.vanished[:10]:
            lines.append(f"  {value!r} vanished: read earlier, absent from {read.describe(o)}")
        if self.recovered:
            lines.append(f"  recovered (indeterminate adds present): {len(self.recovered)}")
        return "\n".join(lines)


def check_set(history: BaseHistory | Iterable[Op], final: Op | None = None) -> SetCheck:
    """Check a set history: `add` (value: the element) and `read` (result: the elements).
    The final read is `final`, or the ok read that completed last."""
    hist = _history(history)
    adds = [op for op in hist.ops if op.f in ADD_FS]
    reads = [op for op in hist.ops if op.f in READ_FS and op.type == "ok"]
    for read in reads:
        if not isinstance(read.result, tuple):
            raise HistoryError(
                f"operation #{read.id} (read): a set read needs a list of elements, "
                f"got {read.result!r}"
            )
    if final is None and reads:
        final = max(reads, key=lambda op: (op.complete or 0.0, op.id))
    # The earliest invocation of a non-failed add of each element.
    first_add: dict[Any, float] = {}
    for op in adds:
        if op.type != "fail":
            key = hashable(op.value)
            first_add[key] = min(first_add.get(key, op.invoke), op.invoke)
    unexpected = []
    vanished = []
    seen_by: dict[Any, float] = {}  # element -> earliest completion of a read returning it
    for read in sorted(reads, key=lambda op: op.invoke):
        assert isinstance(read.result, tuple)
        present = {hashable(v) for v in read.result}
        end = read.complete or read.invoke
        for value in read.result:
            key = hashable(value)
            if first_add.get(key, end + 1) > end:
                unexpected.append((value, read))
        for key, returned in seen_by.items():
            if returned < read.invoke and key not in present:
                vanished.append((key, read))
        for key in present:
            if end < seen_by.get(key, end + 1):
                seen_by[key] = end
    lost: list[Op] = []
    recovered: list[Op] = []
    if final is not None:
        assert isinstance(final.result, tuple)
        present = {hashable(v) for v in final.result}
        for op in adds:
            if op.type == "ok" and op.complete is not None and op.complete < final.invoke:
                if hashable(op.value) not in present:
                    lost.append(op)
            elif op.type == "info" and hashable(op.value) in present:
                recovered.append(op)
    return SetCheck(
        final=final,
        lost=tuple(lost),
        unexpected=tuple(unexpected),
        vanished=tuple(vanished),
        recovered=tuple(recovered),
        adds=len(adds),
        reads=len(reads),
        origin=hist.origin,
    )
