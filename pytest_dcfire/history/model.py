"""Operations, fire marks and the BaseHistory that holds them (no checker: history.py adds
them to make the `History` users get).

One record per client call (invocation and outcome together) keeps the checkers simple; the
JSON-lines form spells each call out as an invoke line and a completion line, as Jepsen does.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal, TypeAlias, TypeVar, cast

from pytest_dcfire.errors import DcfireError

#: What a recorded argument or result may be: JSON's values, with arrays held as tuples.
Value: TypeAlias = "bool | int | float | str | tuple[Value, ...] | dict[str, Value] | None"

#: How a call ended: it took effect (ok), it certainly did not (fail), or nobody knows (info).
OpType = Literal["ok", "fail", "info"]
OP_TYPES: tuple[OpType, ...] = ("ok", "fail", "info")

#: Operation names that mean "read the current value" (no effect on the state).
READ_FS = frozenset({"read", "get"})


class HistoryError(DcfireError):
    """A history is malformed (bad record, bad file line) or does not suit a checker."""


def freeze(value: Any) -> Value:
    """Turn a client's value into a recordable one: sequences become tuples, mappings get
    string keys, bytes are decoded, anything else that JSON cannot hold becomes its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    if isinstance(value, Mapping):
        return {str(k): freeze(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return tuple(sorted((freeze(item) for item in value), key=repr))
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return repr(bytes(value))
    return repr(value)


def hashable(value: Value) -> Any:
    """A hashable stand-in for `value` (mappings become sorted item tuples), for sets and
    memo keys; equal values give equal stand-ins."""
    if isinstance(value, dict):
        return ("__mapping__", tuple(sorted((k, hashable(v)) for k, v in value.items())))
    if isinstance(value, tuple):
        return tuple(hashable(item) for item in value)
    return value


@dataclass(frozen=True)
class Op:
    """One client call: what it did (`f`, `key`, `value`), when (`invoke`, `complete`, from
    `time.monotonic()`), who (`process`) and how it ended (`type`, `result`, `error`).

    `value` is the argument (the value written, the `(expected, new)` pair of a cas, None for
    a read); `result` is what the call returned (the value read; False for a cas whose
    compare failed). `complete` is None only for an `info` call that never returned.
    Values are frozen on the way in (see `freeze`: lists become tuples, and so on).
    """

    f: str
    value: Value = None
    type: OpType = "ok"
    invoke: float = 0.0
    complete: float | None = None
    key: Value = None
    result: Value = None
    process: int | str = 0
    id: int = -1
    error: str | None = None

    @classmethod
    def _unchecked(cls, **fields: Any) -> Op:
        """An Op from fields known to be valid and frozen (the workload's hot path: about
        a tenth of the checked constructor's cost). All fields must be given."""
        op = cls.__new__(cls)
        op.__dict__.update(fields)
        return op

    def __post_init__(self) -> None:
        if not isinstance(self.f, str) or not self.f:
            raise HistoryError(f"an operation needs a name (f), got {self.f!r}")
        if self.type not in OP_TYPES:
            raise HistoryError(
                f"operation {self.id} ({self.f}): type must be one of ok, fail, info, "
                f"got {self.type!r}"
            )
        object.__setattr__(self, "invoke", float(self.invoke))
        for name in ("value", "key", "result"):
            raw = getattr(self, name)
            if not (raw is None or isinstance(raw, (bool, int, float, str))):
                object.__setattr__(self, name, freeze(raw))
        if not math.isfinite(self.invoke) or not (
            self.complete is None or math.isfinite(self.complete)
        ):
            raise HistoryError(
                f"operation {self.id} ({self.f}): times must be finite, got invoke "
                f"{self.invoke}, complete {self.complete}"
            )
        if self.complete is None:
            if self.type != "info":
                raise HistoryError(
                    f"operation {self.id} ({self.f}): an {self.type} operation needs its "
                    "completion time (only info operations may lack one)"
                )
        else:
            object.__setattr__(self, "complete", float(self.complete))
            if self.complete < self.invoke:
                raise HistoryError(
                    f"operation {self.id} ({self.f}): completes at {self.complete} before it "
                    f"was invoked at {self.invoke}"
                )

    @property
    def duration(self) -> float | None:
        """Seconds from invocation to completion (None if it never returned)."""
        return None if self.complete is None else self.complete - self.invoke

    def describe(self, origin: float = 0.0) -> str:
        """One line for a person: times relative to `origin`, what, outcome."""
        end = "..." if self.complete is None else f"{self.complete - origin:.3f}"
        what = self.f if self.key is None else f"{self.f} {self.key!r}"
        if self.f in READ_FS:
            what += f" -> {self.result!r}" if self.type == "ok" else ""
        else:
            what += f" {self.value!r}"
            if self.type == "ok" and self.result is not None:
                what += f" -> {self.result!r}"
        outcome = self.type + (f" ({self.error})" if self.error else "")
        return (
            f"[{self.invoke - origin:.3f} .. {end}] #{self.id} process {self.process}: "
            f"{what}  {outcome}"
        )


@dataclass(frozen=True)
class Mark:
    """A moment worth knowing when reading a history: `ignite`, `restore`, or any name."""

    name: str
    time: float
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", float(self.time))
        if not math.isfinite(self.time):
            raise HistoryError(f"mark {self.name!r}: its time must be finite, got {self.time}")


# ---------------------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------------------


def _event_lines(op: Op) -> tuple[dict[str, Any], dict[str, Any]]:
    common: dict[str, Any] = {"id": op.id, "process": op.process, "f": op.f, "key": op.key}
    invoke = {"type": "invoke", **common, "value": op.value, "time": op.invoke}
    done: dict[str, Any] = {"type": op.type, **common, "value": op.value}
    done["result"] = op.result
    if op.error is not None:
        done["error"] = op.error
    done["time"] = op.complete
    return invoke, done


def _thaw(value: Any) -> Value:
    """JSON arrays load as lists: turn them back into tuples, as they were recorded."""
    if isinstance(value, list):
        return tuple(_thaw(item) for item in value)
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return cast(Value, value)


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(", ", ": "), ensure_ascii=False)


# ---------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------


@dataclass
class _State:
    ops: list[Op] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    ordered: tuple[Op, ...] | None = None
    next_id: int = 0


_H = TypeVar("_H", bound="BaseHistory")


class BaseHistory:
    """The calls a workload made and the fire marks, in a form the checkers read (they take
    a BaseHistory; `History`, history.py, adds them as methods).

    Thread-safe to append to. `ops` is ordered by invocation time (then id), whatever the
    order the calls finished in, so two histories with the same records compare equal.
    """

    def __init__(self, ops: Iterable[Op] = (), marks: Iterable[Mark] = ()) -> None:
        self._lock = threading.Lock()
        self._s = _State()
        for op in ops:
            self.append(op)
        for mark in marks:
            self._s.marks.append(mark)

    # -- building ------------------------------------------------------------------------

    def append(self, op: Op) -> Op:
        """Add a finished call; an `id` below 0 is replaced by the next free one."""
        with self._lock:
            return self._append(op)

    def _append(self, op: Op) -> Op:
        """`append` for a caller that holds `_lock` (the workload, to take one lock a call)."""
        s = self._s
        if op.id < 0:
            op = replace(op, id=s.next_id)
        if op.id >= s.next_id:
            s.next_id = op.id + 1
        s.ops.append(op)
        s.ordered = None
        return op

    def mark(self, name: str, time: float | None = None, label: str = "") -> Mark:
        """Record a moment (`"ignite"`, `"restore"`, ...) at `time` (default: now,
        `time.monotonic()`), e.g. `history.mark("ignite", fire.record.ignited, "pangyo")`."""
        import time as _time

        mark = Mark(name, _time.monotonic() if time is None else time, label)
        with self._lock:
            self._s.marks.append(mark)
        return mark

    # -- reading -------------------------------------------------------------------------

    @property
    def ops(self) -> tuple[Op, ...]:
        """Every call, ordered by invocation time, then id."""
        with self._lock:
            s = self._s
            if s.ordered is None:
                s.ordered = tuple(sorted(s.ops, key=lambda op: (op.invoke, op.id)))
            return s.ordered

    @property
    def marks(self) -> tuple[Mark, ...]:
        """The marks, ordered by time."""
        with self._lock:
            return tuple(sorted(self._s.marks, key=lambda m: m.time))

    def marks_named(self, name: str) -> tuple[Mark, ...]:
        return tuple(m for m in self.marks if m.name == name)

    @property
    def origin(self) -> float:
        """The earliest time in the history (0.0 if empty): times are shown relative to it."""
        times = [op.invoke for op in self.ops[:1]] + [m.time for m in self.marks[:1]]
        return min(times) if times else 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._s.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseHistory):
            return NotImplemented
        return self.ops == other.ops and self.marks == other.marks

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        ops = self.ops
        counts = {t: sum(1 for op in ops if op.type == t) for t in OP_TYPES}
        return (
            f"<History {len(ops)} ops ({counts['ok']} ok, {counts['fail']} fail, "
            f"{counts['info']} info), {len(self.marks)} marks>"
        )

    # -- JSON lines ----------------------------------------------------------------------

    def dumps_jsonl(self) -> str:
        """The history as JSON lines, in time order: an `invoke` line and an `ok`/`fail`/`info`
        line per call (an info that never returned has `"time": null` and comes last), and a
        `mark` line per mark. `History.loads_jsonl` reads it back exactly."""
        rows: list[tuple[float, int, int, dict[str, Any]]] = []
        for op in self.ops:
            invoke, done = _event_lines(op)
            rows.append((op.invoke, 0, op.id, invoke))
            end = math.inf if op.complete is None else op.complete
            rows.append((end, 2, op.id, done))
        for n, mark in enumerate(self.marks):
            line = {"type": "mark", "name": mark.name, "label": mark.label, "time": mark.time}
            rows.append((mark.time, 1, n, line))
        rows.sort(key=lambda row: row[:3])
        return "".join(_dump(row[3]) + "\n" for row in rows)

    def to_jsonl(self, path: str | os.PathLike[str] | IO[str]) -> None:
        """Write `dumps_jsonl()` to a path or an open text file."""
        text = self.dumps_jsonl()
        if isinstance(path, (str, os.PathLike)):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write(text)

    @classmethod
    def loads_jsonl(cls: type[_H], text: str, source: str = "<string>") -> _H:
        """Read what `dumps_jsonl` wrote. A call with an invoke line and no completion line
        becomes an `info` call that never returned."""
        return cls._parse(io.StringIO(text), source)

    @classmethod
    def from_jsonl(cls: type[_H], path: str | os.PathLike[str] | IO[str]) -> _H:
        """Read a JSON-lines history from a path or an open text file."""
        if isinstance(path, (str, os.PathLike)):
            with open(path, encoding="utf-8") as fh:
                return cls._parse(fh, os.fspath(path))
        return cls._parse(path, getattr(path, "name", "<stream>"))

    @classmethod
    def _parse(cls: type[_H], lines: Iterable[str], source: str) -> _H:
        invokes: dict[int, tuple[int, dict[str, Any]]] = {}
        done: dict[int, dict[str, Any]] = {}
        marks: list[Mark] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HistoryError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise HistoryError(f"{where}: expected a JSON object, got {line.strip()[:60]}")
            kind = row.get("type")
            try:
                if kind == "mark":
                    marks.append(Mark(str(row["name"]), row["time"], str(row.get("label", ""))))
                elif kind == "invoke":
                    op_id = int(row["id"])
                    if op_id in invokes:
                        raise HistoryError(f"{where}: operation id {op_id} is invoked twice")
                    invokes[op_id] = (number, row)
                elif kind in OP_TYPES:
                    op_id = int(row["id"])
                    if op_id not in invokes:
                        raise HistoryError(
                            f"{where}: operation {op_id} completes before it is invoked"
                        )
                    if op_id in done:
                        raise HistoryError(f"{where}: operation {op_id} completes twice")
                    done[op_id] = row
                else:
                    raise HistoryError(
                        f"{where}: type must be one of invoke, ok, fail, info, mark; got {kind!r}"
                    )
            except KeyError as exc:
                raise HistoryError(f"{where}: a {kind} line needs the field {exc}") from None
        history = cls(marks=marks)
        for op_id, (number, inv) in invokes.items():
            end = done.get(op_id, {})
            src = {**inv, **end}  # what the completion says wins (as in Jepsen)
            try:
                op = Op(
                    f=str(src["f"]),
                    value=_thaw(src.get("value")),
                    type=end.get("type", "info"),
                    invoke=inv["time"],
                    complete=end.get("time"),
                    key=_thaw(src.get("key")),
                    result=_thaw(end.get("result")),
                    process=inv.get("process", 0),
                    id=op_id,
                    error=end.get("error"),
                )
            except KeyError as exc:
                raise HistoryError(
                    f"{source}:{number}: operation {op_id} needs the field {exc}"
                ) from None
            except (TypeError, ValueError, HistoryError) as exc:
                raise HistoryError(f"{source}:{number}: operation {op_id}: {exc}") from None
            history.append(op)
        return history
