"""A client workload that runs in background threads while sites burn, recording a History.

Recovery is judged on what clients saw: every call is timed and classified (ok, fail, or
info when nobody can know whether it took effect), so the checkers can tell lost data from
mere unavailability.

How an operation reports what happened:

- it returns: `ok`, and the return value is the result (for a read, the value read);
- it raises `Fail`, `ConnectionRefusedError` or `socket.gaierror` (bare, or as the reason
  of urllib's `URLError`): `fail`, it certainly did not take effect (nothing was sent);
- it raises anything else (a timeout, a reset after sending, `Indeterminate`): `info`;
- `classify(exc)` may decide first: return "fail" or "info", or None for the default.

What it did: by default every call is `kind` ("write") of the value `n` (a read has value
None); an operation that does several things says which, before doing it, with
`declare(f, key=..., value=...)`, so that even a call that times out is described right.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from pytest_dcfire.errors import DcfireError
from pytest_dcfire.history.history import History
from pytest_dcfire.history.model import READ_FS, Mark, Op, OpType, Value, freeze

Classify = Callable[[BaseException], "str | None"]


class Fail(Exception):
    """Raise from a workload operation: it certainly did not take effect."""


class Indeterminate(Exception):
    """Raise from a workload operation: it may or may not have taken effect."""


class WorkloadError(DcfireError):
    """The workload machinery failed (a bad `classify`, an operation that raised a
    BaseException); the workload stopped."""


#: Exceptions that prove a call never reached the server.
NOT_SENT: tuple[type[BaseException], ...] = (Fail, ConnectionRefusedError, socket.gaierror)

_UNSET: Any = object()


@dataclass
class _Call:
    """The description of the call in flight on a thread (mutable until it completes)."""

    f: str
    key: Value
    value: Value


_current = threading.local()


def declare(f: str, *, key: Any = _UNSET, value: Any = _UNSET) -> None:
    """Say what the running workload operation does, before doing it: `declare("read",
    key="k1")`, `declare("cas", key="k1", value=(1, 2))`. Unset, `key` is the workload's and
    `value` is `n` (None for a read). Only callable from the operation's own thread."""
    call: _Call | None = getattr(_current, "call", None)
    if call is None:
        raise WorkloadError("declare() is only valid inside a workload operation")
    call.f = f
    if key is not _UNSET:
        call.key = freeze(key)
    if value is not _UNSET:
        call.value = freeze(value)
    elif f in READ_FS:
        call.value = None


def transaction(micro_ops: Any) -> list[list[Any]]:
    """Declare the running workload operation a list-append transaction (checked by
    `History.isolation`): `micro_ops` are `("append", key, value)` and `("r", key)` (or
    `("r", key, None)`). Returns them as lists for the operation to fill in: set each
    read's third item to the list it read, and return the whole (that is the result)."""
    filled: list[list[Any]] = []
    for m in micro_ops:
        if not isinstance(m, (list, tuple)) or not m or m[0] not in ("append", "r"):
            raise WorkloadError(
                f"transaction micro-operation {m!r}: valid are ('append', key, value) and "
                "('r', key)"
            )
        if m[0] == "append" and len(m) != 3:
            raise WorkloadError(f"transaction micro-operation {m!r}: an append needs a value")
        if m[0] == "r" and len(m) not in (2, 3):
            raise WorkloadError(f"transaction micro-operation {m!r}: a read is ('r', key)")
        filled.append(["append", m[1], m[2]] if m[0] == "append" else ["r", m[1], None])
    declare("txn", value=[list(m) for m in filled])
    return filled


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_W = TypeVar("_W", bound="Workload")


class Workload:
    """Calls `op(n)` from `threads` threads, `interval` seconds apart per thread, with
    n = 1, 2, 3, ... (unique, increasing), until stopped; `history` records every call.

    A context manager: threads start on entry and stop on exit; calls still running after
    `stop_timeout` seconds are recorded as `info` that never returned and their threads are
    abandoned (daemon threads; what they return later is ignored). `limit` stops after that
    many calls. Errors of the machinery itself (a `classify` that raises, an operation that
    raises a BaseException such as `pytest.fail`) stop the workload and are raised on exit.
    """

    def __init__(
        self,
        op: Callable[[int], Any],
        *,
        threads: int = 2,
        interval: float = 0.01,
        kind: str = "write",
        key: Any = None,
        classify: Classify | None = None,
        stop_timeout: float = 2.0,
        limit: int | None = None,
        history: History | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(op):
            raise WorkloadError(f"workload op must be callable, got {op!r}")
        if not isinstance(threads, int) or threads < 1:
            raise WorkloadError(f"workload threads must be an integer >= 1, got {threads!r}")
        if interval < 0:
            raise WorkloadError(f"workload interval must be >= 0 seconds, got {interval!r}")
        if stop_timeout < 0:
            raise WorkloadError(f"workload stop_timeout must be >= 0, got {stop_timeout!r}")
        if not isinstance(kind, str) or not kind:
            raise WorkloadError(f"workload kind must be an operation name, got {kind!r}")
        if limit is not None and limit < 0:
            raise WorkloadError(f"workload limit must be >= 0, got {limit!r}")
        self.op = op
        self.threads = threads
        self.interval = float(interval)
        self.kind = kind
        self.key = freeze(key)
        self.classify = classify
        self.stop_timeout = float(stop_timeout)
        self.limit = limit
        self.history = history if history is not None else History()
        self.name = name or getattr(op, "__name__", None) or "workload"
        #: Errors of the machinery (not of the operations), in the order they happened.
        self.errors: list[BaseException] = []
        #: Calls that completed after the workload stopped (not recorded).
        self.late = 0
        #: Threads still running an operation when the workload gave up on them.
        self.abandoned = 0
        # One lock for numbering, the running calls and the history (its own lock, so that
        # a call takes a lock twice, not three times).
        self._lock = self.history._lock
        self._stopping = threading.Event()
        self._next = 1
        self._closed = False
        self._running: list[tuple[int, _Call, float] | None] = [None] * threads
        self._workers: list[threading.Thread] = []
        self._state = "new"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self: _W) -> _W:
        if self._state != "new":
            raise WorkloadError(f"workload {self.name} was already started")
        self._state = "running"
        for process in range(self.threads):
            worker = threading.Thread(
                target=self._work,
                args=(process,),
                name=f"dcfire-workload-{self.name}-{process}",
                daemon=True,
            )
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> History:
        """Stop the threads (bounded by `stop_timeout`) and return the history."""
        if self._state != "running":
            return self.history
        self._stopping.set()
        deadline = time.monotonic() + self.stop_timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            self._state = "stopped"
            for process, running in enumerate(self._running):
                if running is None:
                    continue
                n, call, started = running
                self._running[process] = None
                self.abandoned += 1
                self.history._append(
                    Op(
                        f=call.f,
                        value=call.value,
                        type="info",
                        invoke=started,
                        complete=None,
                        key=call.key,
                        process=process,
                        id=n,
                        error=f"still running {self.stop_timeout:g} s after the workload stopped",
                    )
                )
        return self.history

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the threads end by themselves (after `limit` calls, or an error);
        True if they all did within `timeout` seconds. The workload keeps running otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in self._workers)

    def __enter__(self: _W) -> _W:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None and self.errors:
            first = self.errors[0]
            if not isinstance(first, Exception):
                raise first  # pytest.fail() or skip() inside the operation: let pytest see it
            raise WorkloadError(
                f"workload {self.name} stopped on an error of its own "
                f"({len(self.errors)} in all): {_describe(first)}"
            ) from first

    def mark(self, name: str, time: float | None = None, label: str = "") -> Mark:
        """Mark a moment in the history (see `History.mark`)."""
        return self.history.mark(name, time, label)

    @property
    def running(self) -> bool:
        return self._state == "running" and not self._stopping.is_set()

    def __repr__(self) -> str:
        return (
            f"<Workload {self.name} {self._state}, {self.threads} threads, "
            f"{len(self.history)} calls>"
        )

    # -- threads -------------------------------------------------------------------------

    def _take(self, process: int) -> tuple[int, _Call, float] | None:
        """The next call, registered as running (so that stop() accounts for it), or None
        once stopping: nothing is invoked that the history will not show."""
        with self._lock:
            n = self._next
            if self._stopping.is_set() or (self.limit is not None and n > self.limit):
                return None
            self._next = n + 1
            call = _Call(self.kind, self.key, None if self.kind in READ_FS else n)
            running = (n, call, time.monotonic())
            self._running[process] = running
            return running

    def _finish(self, process: int, op: Op) -> None:
        with self._lock:
            self._running[process] = None
            if self._closed:
                self.late += 1
            else:
                self.history._append(op)

    def _outcome(self, exc: BaseException) -> OpType:
        if self.classify is not None:
            verdict = self.classify(exc)
            if verdict in ("fail", "info"):
                return "fail" if verdict == "fail" else "info"
            if verdict is not None:
                raise WorkloadError(
                    f"classify({_describe(exc)}) returned {verdict!r}; "
                    "it must return 'fail', 'info' or None"
                )
        # urllib wraps the connection's error: URLError(reason=ConnectionRefusedError(...)),
        # one attempt, so its reason says as much as the bare error would.
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, NOT_SENT):
            return "fail"
        return "fail" if isinstance(exc, NOT_SENT) else "info"

    def _work(self, process: int) -> None:
        clock = time.monotonic
        op = self.op
        try:
            while not self._stopping.is_set():
                taken = self._take(process)
                if taken is None:
                    break
                n, call, started = taken
                _current.call = call
                outcome: OpType = "ok"
                result: Value = None
                error: str | None = None
                machinery: BaseException | None = None
                try:
                    result = freeze(op(n))
                except WorkloadError as exc:  # a bad declaration: a bug, not an outcome
                    outcome, error, machinery = "info", _describe(exc), exc
                except Exception as exc:
                    error = _describe(exc)
                    try:
                        outcome = self._outcome(exc)
                    except BaseException as bad:
                        outcome, machinery = "info", bad
                except BaseException as exc:  # pytest.fail(), SystemExit, ...
                    outcome, error, machinery = "info", _describe(exc), exc
                finally:
                    _current.call = None
                ended = clock()
                self._finish(
                    process,
                    Op._unchecked(  # every field is frozen, the times come from one clock
                        f=call.f,
                        value=call.value,
                        type=outcome,
                        invoke=started,
                        complete=ended,
                        key=call.key,
                        result=result,
                        process=process,
                        id=n,
                        error=error,
                    ),
                )
                if machinery is not None:
                    raise machinery
                if self.interval and self._stopping.wait(self.interval):
                    break
        except BaseException as exc:
            self.errors.append(exc)
            self._stopping.set()
            with self._lock:
                self._running[process] = None
