"""Lost writes and availability: what a fire cost in data (RPO) and in time (RTO, outages).

Both read only the History, so they are as cheap as a pass over the operations and can run
on every test; the results carry the evidence (operations with times) and print for people.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_dcfire.history.model import BaseHistory, Op, Value, freeze

#: Operation names that add a value the final read should contain.
WRITE_FS = ("write", "put", "add", "insert", "append")


def _key(value: Value) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)


def _flatten(present: Iterable[Any] | Mapping[Any, Any]) -> list[tuple[Any, Value]]:
    """(key, value) pairs read back; a plain iterable gives key None (writes' keys are then
    ignored). In a mapping, a list, set or frozenset holds several values of its key; any
    other value (a tuple, a string) is one value."""
    if isinstance(present, Mapping):
        pairs: list[tuple[Any, Value]] = []
        for key, values in present.items():
            many = values if isinstance(values, (list, set, frozenset)) else [values]
            pairs.extend((_key(freeze(key)), freeze(v)) for v in many)
        return pairs
    return [(None, freeze(v)) for v in present]


def _span(ops: Iterable[Op]) -> tuple[float, float] | None:
    ops = list(ops)
    if not ops:
        return None
    start = min(op.invoke for op in ops)
    end = max(op.complete if op.complete is not None else op.invoke for op in ops)
    return (start, end)


def _values(ops: Iterable[Op], limit: int = 10) -> str:
    ops = list(ops)
    shown = ", ".join(repr(op.value) for op in ops[:limit])
    return shown + (f" and {len(ops) - limit} more" if len(ops) > limit else "")


@dataclass(frozen=True)
class LostWrites:
    """What a final read (`present`) says about the writes of a history.

    - `lost`: acknowledged (ok) writes whose value is missing: data loss.
    - `maybe_lost`: indeterminate (info) writes whose value is missing: allowed.
    - `phantoms`: values read back that no write ever tried to write.
    - `revived`: failed writes (certainly not done) whose value is there anyway.
    - `duplicates`: values read back more than once (for information).
    `ok` is true when nothing was lost and nothing appeared from nowhere.
    """

    acknowledged: int
    indeterminate: int
    present: int
    lost: tuple[Op, ...]
    maybe_lost: tuple[Op, ...]
    recovered: tuple[Op, ...]
    phantoms: tuple[Value, ...]
    revived: tuple[Op, ...]
    duplicates: tuple[Value, ...]
    origin: float = 0.0
    #: How the values were compared when it is not plain equality (a `key=`, or values read
    #: back as strings matched to the integers written), or why nothing matched.
    compared: str = ""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.phantoms or self.revived)

    @property
    def rpo_window(self) -> tuple[float, float] | None:
        """From the invocation of the first lost write to the completion of the last."""
        return _span(self.lost)

    @property
    def rpo(self) -> float:
        """The recovery point actually achieved: seconds of acknowledged writes lost (0.0
        when none were)."""
        window = self.rpo_window
        return 0.0 if window is None else window[1] - window[0]

    def __str__(self) -> str:
        o = self.origin
        head = (
            f"{self.acknowledged} acknowledged writes, {self.indeterminate} indeterminate, "
            f"{self.present} values read back"
        )
        lines = []
        if self.ok:
            lines.append(f"no acknowledged write lost ({head})")
        else:
            lines.append(f"writes lost or invented ({head})")
        if self.lost:
            start, end = self.rpo_window or (o, o)
            lines.append(
                f"  LOST: {len(self.lost)} acknowledged writes: {_values(self.lost)} "
                f"(written between t={start - o:.3f} and t={end - o:.3f} s: "
                f"RPO {self.rpo:.3f} s)"
            )
        if self.phantoms:
            shown = ", ".join(repr(v) for v in self.phantoms[:10])
            lines.append(f"  PHANTOM: {len(self.phantoms)} values never written: {shown}")
        if self.revived:
            lines.append(
                f"  REVIVED: {len(self.revived)} failed writes are present: {_values(self.revived)}"
            )
        if self.maybe_lost:
            lines.append(
                f"  maybe lost (indeterminate, allowed): {len(self.maybe_lost)}: "
                f"{_values(self.maybe_lost)}"
            )
        if self.recovered:
            lines.append(f"  indeterminate writes that made it: {len(self.recovered)}")
        if self.duplicates:
            shown = ", ".join(repr(v) for v in self.duplicates[:10])
            lines.append(f"  read back more than once: {shown}")
        if self.compared:
            lines.append(f"  compared: {self.compared}")
        return "\n".join(lines)


def _int_form(value: Value) -> int | None:
    """The integer whose string form `value` is ("17", b"17"), else None ("017", "a")."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        return None
    number = int(value)
    return number if str(number) == value else None


def _is_int(value: Value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _types(values: Iterable[Value]) -> str:
    names = sorted({type(v).__name__ for v in values})
    return " and ".join(names) if names else "nothing"


def _mapper(
    key: Callable[[Any], Any] | None, written: list[Value], read: list[Value]
) -> tuple[Callable[[Value], Value], str]:
    """How a value is turned into what is compared, and how to say so.

    With `key`, both sides go through it (a value it refuses stays as it is). Without, the
    string forms of integers read back ("17", b"17", as Redis or HTTP return them) are
    compared as integers when every value written is one: the workload's `n`."""
    if key is not None:

        def keyed(value: Value) -> Value:
            try:
                return freeze(key(value))
            except Exception:
                return value

        name = getattr(key, "__name__", repr(key))
        return keyed, f"written and read values through key={name}"
    if written and all(_is_int(v) for v in written):
        strings = [v for v in read if isinstance(v, (str, bytes)) and _int_form(v) is not None]
        if strings:

            def as_int(value: Value) -> Value:
                number = _int_form(value) if isinstance(value, (str, bytes)) else None
                return value if number is None else number

            kind = _types(strings)
            return as_int, (
                f"{len(strings)} value(s) read back as {kind} compared as the integers "
                f"written (e.g. {strings[0]!r} as {as_int(strings[0])!r})"
            )
    return (lambda value: value), ""


def lost_writes(
    history: BaseHistory | Iterable[Op],
    present: Iterable[Any] | Mapping[Any, Any],
    writes: Iterable[str] | None = None,
    key: Callable[[Any], Any] | None = None,
) -> LostWrites:
    """Compare the writes of `history` (operations named in `writes`, default `WRITE_FS`)
    with `present`, what a final read returned: an iterable of values, or a mapping of key
    to value(s) to match writes by key and value.

    A workload's writes are its `n` (1, 2, 3, ...), so `present` holds the values read back,
    e.g. `[int(v) for v in redis.lrange("log", 0, -1)]`. Strings or bytes that are the
    decimal form of the integers written are matched to them; `key` (a callable applied to
    both sides, e.g. `key=int` or `key=lambda v: v["id"]`) maps anything else. When nothing
    matches and the types differ, `compared` says what was compared with what."""
    hist = history if isinstance(history, BaseHistory) else BaseHistory(history)
    names = frozenset(WRITE_FS if writes is None else writes)
    by_key = isinstance(present, Mapping)
    pairs = _flatten(present)
    ops = [op for op in hist.ops if op.f in names]
    norm, compared = _mapper(key, [op.value for op in ops], [v for _, v in pairs])
    counts = Counter((k, _key(norm(v))) for k, v in pairs)

    def ident(op: Op) -> tuple[Any, Any]:
        return (_key(freeze(op.key)) if by_key else None, _key(norm(op.value)))

    attempted = {ident(op) for op in ops}
    lost = tuple(op for op in ops if op.type == "ok" and ident(op) not in counts)
    maybe = tuple(op for op in ops if op.type == "info" and ident(op) not in counts)
    recovered = tuple(op for op in ops if op.type == "info" and ident(op) in counts)
    # A failed write whose value is present only counts if no other attempt wrote it.
    done_values = {ident(op) for op in ops if op.type != "fail"}
    revived = tuple(
        op
        for op in ops
        if op.type == "fail" and ident(op) in counts and ident(op) not in done_values
    )
    phantoms: list[Value] = []
    duplicates: list[Value] = []
    seen: set[tuple[Any, Any]] = set()
    for k, v in pairs:
        ident_v = (k, _key(norm(v)))
        if ident_v in seen:
            continue
        seen.add(ident_v)
        shown = v if not by_key else (k, v)
        if ident_v not in attempted:
            phantoms.append(shown)
        if counts[ident_v] > 1:
            duplicates.append(shown)
    if ops and pairs and len(phantoms) == len(seen):  # not one value read back matched
        written = [norm(op.value) for op in ops]
        read = [norm(v) for _, v in pairs]
        if {type(v) for v in written}.isdisjoint({type(v) for v in read}):
            compared = (
                f"nothing matched: the values written are {_types(written)} "
                f"(e.g. {written[0]!r}), the values read back are {_types(read)} "
                f"(e.g. {read[0]!r}), and values of different types are never equal; "
                "convert what you read back, or pass key= to map both sides to one form "
                "(e.g. key=int)"
            )
        elif by_key:
            written_keys = [freeze(op.key) for op in ops]
            read_keys = [k for k, _ in pairs]
            if {type(k) for k in written_keys}.isdisjoint({type(k) for k in read_keys}):
                compared = (
                    f"nothing matched: the writes' keys are {_types(written_keys)} "
                    f"(e.g. {written_keys[0]!r}), the keys read back are {_types(read_keys)} "
                    f"(e.g. {read_keys[0]!r}); give `present` keys of the type the "
                    "workload wrote"
                )
    return LostWrites(
        acknowledged=sum(1 for op in ops if op.type == "ok"),
        indeterminate=sum(1 for op in ops if op.type == "info"),
        present=len(pairs),
        lost=lost,
        maybe_lost=maybe,
        recovered=recovered,
        phantoms=tuple(phantoms),
        revived=revived,
        duplicates=tuple(duplicates),
        origin=hist.origin,
        compared=compared,
    )


# ---------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """A stretch in which every attempt failed: from the invocation of the first failed
    attempt to the invocation of the next attempt that succeeded (or the last failure's end,
    if none did)."""

    start: float
    end: float
    attempts: int
    recovered: bool

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Availability:
    """Outages, RTO and RPO of a history.

    `rto`: seconds from the last `ignite` mark to the completion of the first of `stable`
    consecutive successful operations invoked after it (None: no ignition marked, or no
    recovery). When a `burning` mark follows the ignition (the moment every step of the fire
    was in place), only operations invoked from then on count as recovery: one invoked while
    the cut was still being applied may succeed, and must not make a dark site look
    recovered at once. `rpo`: the time span of the acknowledged writes that were lost (None
    when no final read was given)."""

    attempts: int
    succeeded: int
    failed: int
    indeterminate: int
    outages: tuple[Outage, ...]
    stable: int
    ignited: float | None
    restored: float | None
    recovered_at: float | None
    lost: LostWrites | None
    origin: float = 0.0

    @property
    def rto(self) -> float | None:
        if self.ignited is None or self.recovered_at is None:
            return None
        return max(0.0, self.recovered_at - self.ignited)

    @property
    def rto_after_restore(self) -> float | None:
        """Seconds from the restore to recovery (0.0 if it recovered while burning)."""
        if self.restored is None or self.recovered_at is None:
            return None
        return max(0.0, self.recovered_at - self.restored)

    @property
    def rpo(self) -> float | None:
        return None if self.lost is None else self.lost.rpo

    @property
    def longest_outage(self) -> Outage | None:
        return max(self.outages, key=lambda o: o.duration, default=None)

    def __str__(self) -> str:
        o = self.origin
        lines = [
            f"{self.attempts} attempts: {self.succeeded} ok, {self.failed} failed, "
            f"{self.indeterminate} indeterminate"
        ]
        if self.ignited is None:
            lines.append("  RTO: unknown (no ignition marked in the history)")
        elif self.recovered_at is None:
            lines.append(
                f"  RTO: not recovered: no {self.stable} consecutive successes after the "
                f"ignition at t={self.ignited - o:.3f} s"
            )
        else:
            extra = ""
            if self.rto_after_restore is not None:
                extra = f", {self.rto_after_restore:.3f} s after the restore"
            lines.append(
                f"  RTO: {self.rto:.3f} s (ignition at t={self.ignited - o:.3f}, "
                f"{self.stable} consecutive successes from t={self.recovered_at - o:.3f}"
                f"{extra})"
            )
        if self.lost is not None:
            lines.append(
                f"  RPO: {self.lost.rpo:.3f} s ({len(self.lost.lost)} acknowledged writes lost)"
            )
        if self.outages:
            longest = self.longest_outage
            assert longest is not None
            lines.append(
                f"  {len(self.outages)} outages; longest {longest.duration:.3f} s from "
                f"t={longest.start - o:.3f} ({longest.attempts} failed attempts"
                + ("" if longest.recovered else ", never recovered")
                + ")"
            )
        else:
            lines.append("  no outage: no attempt failed")
        return "\n".join(lines)


def availability(
    history: BaseHistory | Iterable[Op],
    stable: int = 3,
    present: Iterable[Any] | Mapping[Any, Any] | None = None,
    lost: LostWrites | None = None,
) -> Availability:
    """Outage windows, the RTO from the last `ignite` mark, and the RPO (from `lost`, or
    computed from `present`, a final read)."""
    if stable < 1:
        raise ValueError("stable must be at least 1")
    hist = history if isinstance(history, BaseHistory) else BaseHistory(history)
    ops = hist.ops  # by invocation time
    if lost is None and present is not None:
        lost = lost_writes(hist, present)

    outages: list[Outage] = []
    run: list[Op] = []
    for op in ops:
        if op.type == "ok":
            if run:
                outages.append(Outage(run[0].invoke, op.invoke, len(run), True))
                run = []
        else:
            run.append(op)
    if run:
        end = max(op.complete if op.complete is not None else op.invoke for op in run)
        outages.append(Outage(run[0].invoke, end, len(run), False))

    ignitions = hist.marks_named("ignite")
    ignited = ignitions[-1].time if ignitions else None
    restored = None
    recovered_at = None
    if ignited is not None:
        restores = [m.time for m in hist.marks_named("restore") if m.time >= ignited]
        restored = restores[0] if restores else None
        in_place = [m.time for m in hist.marks_named("burning") if m.time >= ignited]
        settled = in_place[0] if in_place else ignited
        after = sorted(
            (op for op in ops if op.invoke >= settled),
            key=lambda op: (op.complete if op.complete is not None else float("inf"), op.id),
        )
        streak = 0
        for op in after:
            if op.type == "ok":
                streak += 1
                if streak == 1:
                    first = op
                if streak >= stable:
                    recovered_at = first.complete
                    break
            else:
                streak = 0
    return Availability(
        attempts=len(ops),
        succeeded=sum(1 for op in ops if op.type == "ok"),
        failed=sum(1 for op in ops if op.type == "fail"),
        indeterminate=sum(1 for op in ops if op.type == "info"),
        outages=tuple(outages),
        stable=stable,
        ignited=ignited,
        restored=restored,
        recovered_at=recovered_at,
        lost=lost,
        origin=hist.origin,
    )
