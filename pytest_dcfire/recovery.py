"""Waiting for recovery: `eventually` (a condition becomes true) and `measure_recovery`
(how long until a probe succeeds `stable` times in a row, counted from ignition).

The RTO is measured from ignition to the moment the system *answered*: the completion of
the first of `stable` consecutive successful probes, the instant `History.availability()`
uses too. A probe that hangs is an attempt in progress, not a success: a probe that blocks
for a second and then succeeds recovered a second later than it started.

Both go through tenacity and fail with what a person needs: how long it waited, how many
attempts it made, and the last error it saw. `timeout` bounds the whole wait even when a call
never returns (a client without a timeout on a blackholed site waits forever): each call runs
in a daemon thread, and one still running at the deadline is abandoned with an error that
says so, instead of hanging the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pytest_dcfire.errors import RecoveryTimeout

T = TypeVar("T")

#: Seconds between probes: short enough to measure an RTO to a tenth of a second.
PROBE_INTERVAL = 0.1


class _NotYet(Exception):
    """A probe failed or returned False; tenacity retries on it."""


@dataclass(frozen=True)
class Recovery:
    """The outcome of `measure_recovery`: `rto` in seconds from ignition (or from the call)
    to the completion of the first of the `stable` consecutive successful probes."""

    rto: float
    attempts: int
    failures: int
    since: float
    last_error: str | None = None

    def __str__(self) -> str:
        return (
            f"recovered in {self.rto:.2f} s ({self.attempts} probes, {self.failures} failed"
            + (f"; last failure: {self.last_error}" if self.last_error else "")
            + ")"
        )


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _StillRunning(Exception):
    """A call was still running when the wait's deadline passed."""

    def __init__(self, running: float) -> None:
        super().__init__(running)
        self.running = running


def _call_by(fn: Callable[[], T], deadline: float) -> T:
    """`fn()`, in a daemon thread so that a call that never returns cannot outlast
    `deadline` (a `time.monotonic()` instant); its exception, of any kind, is raised here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread, whatever it is
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, name=f"dcfire-probe-{_describe(fn)}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - started))
    if thread.is_alive():
        raise _StillRunning(time.monotonic() - started)
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def _hung(what: str, timeout: float, waited: float, attempts: int, running: float) -> str:
    return (
        f"{what} within {timeout:g} s: the last call was still running after {running:.1f} s "
        f"when the time ran out (waited {waited:.1f} s, {attempts} attempts); a call that "
        "can hang needs a timeout of its own, shorter than this wait (a burning site answers "
        "nothing, ever: e.g. urlopen(..., timeout=1), socket.create_connection(..., timeout=1))"
    )


def eventually(fn: Callable[[], T], timeout: float, interval: float = PROBE_INTERVAL) -> T:
    """Call `fn` until it neither raises nor returns False; return what it returned."""
    from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    started = time.monotonic()
    attempts = 0
    last: list[BaseException | None] = [None]

    def once() -> T:
        nonlocal attempts
        attempts += 1
        try:
            result = _call_by(fn, started + timeout)
        except _StillRunning:
            raise
        except Exception as exc:
            last[0] = exc
            raise _NotYet() from exc
        if result is False:
            last[0] = AssertionError("returned False")
            raise _NotYet()
        return result

    try:
        return Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_exception_type(_NotYet),
        )(once)
    except _StillRunning as hung:
        waited = time.monotonic() - started
        what = f"eventually({_describe(fn)}) did not succeed"
        raise RecoveryTimeout(_hung(what, timeout, waited, attempts, hung.running)) from None
    except RetryError:
        raise RecoveryTimeout(
            f"eventually({_describe(fn)}) did not succeed within {timeout:g} s "
            f"(waited {time.monotonic() - started:.1f} s, {attempts} attempts); "
            f"last error: {_error_text(last[0])}"
        ) from None


def measure_recovery(
    probe: Callable[[], Any],
    since: float,
    timeout: float,
    stable: int = 3,
    interval: float = PROBE_INTERVAL,
) -> Recovery:
    """Probe until `stable` consecutive successes; RTO = when the first of them returned,
    minus `since` (a probe's answer, not its start, is when the system was back).

    `since` is a `time.monotonic()` instant, normally the last ignition of the test.
    """
    if stable < 1:
        raise ValueError("stable must be at least 1")
    from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    started = time.monotonic()
    attempts = failures = 0
    streak_start: float | None = None
    streak = 0
    last: BaseException | None = None

    def once() -> None:
        nonlocal attempts, failures, streak, streak_start, last
        attempts += 1
        try:
            ok = _call_by(probe, started + timeout) is not False
            if not ok:
                last = AssertionError("probe returned False")
        except _StillRunning:
            raise
        except Exception as exc:
            ok = False
            last = exc
        answered = time.monotonic()
        if not ok:
            failures += 1
            streak, streak_start = 0, None
            raise _NotYet()
        if streak == 0:
            streak_start = answered
        streak += 1
        if streak < stable:
            raise _NotYet()

    try:
        Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_exception_type(_NotYet),
        )(once)
    except _StillRunning as hung:
        waited = time.monotonic() - started
        what = f"no recovery: {_describe(probe)} did not succeed {stable} times in a row"
        raise RecoveryTimeout(_hung(what, timeout, waited, attempts, hung.running)) from None
    except RetryError:
        raise RecoveryTimeout(
            f"no recovery within {timeout:g} s: {_describe(probe)} did not succeed {stable} "
            f"times in a row (waited {time.monotonic() - started:.1f} s, {attempts} attempts, "
            f"{failures} failed); last error: {_error_text(last)}"
        ) from None
    assert streak_start is not None
    return Recovery(
        rto=max(0.0, streak_start - since),
        attempts=attempts,
        failures=failures,
        since=since,
        last_error=_error_text(last) if last is not None else None,
    )
