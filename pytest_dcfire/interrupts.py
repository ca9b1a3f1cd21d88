"""Interruptions end a session the way Ctrl-C does: every fault undone, everything removed.

- SIGINT: pytest turns it into KeyboardInterrupt and still calls `pytest_sessionfinish`,
  where the plugin closes the session. A user hammering Ctrl-C would interrupt that cleanup
  too (a traceback, a helper left running until a later session): after the first
  interrupt, later SIGINTs and SIGTERMs are absorbed with a line saying cleanup is under way
  (SIGKILL still ends it at once; then the dead-man switch and the next session clean up).
- SIGTERM (what CI runners, `timeout` and container stops send) kills Python outright by
  default, so no finalizer runs; while a topology is configured, a handler turns it into the
  same KeyboardInterrupt (only when nobody else installed a handler).
- pytest-timeout's `signal` method raises inside the test, so teardown runs as usual. Its
  `thread` method calls `os._exit(1)` from a timer thread: nothing of ours would run, so the
  guard sets that timer itself and, when it expires, undoes every fault and removes the
  system before handing over to pytest-timeout's own expiry (which dumps stacks and exits).
- SIGKILL cannot be caught: the helper's agent notices its channel closing and undoes every
  cut and thaws every pool (its dead-man switch, from its journal), and the next session
  removes the containers, volumes and networks (`runtime.reaper`).
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that pytest unwinds as for Ctrl-C."""


class Guard:
    """Registered as a pytest plugin by `plugin.pytest_configure` when a topology is set."""

    def __init__(self, close: Callable[[str], list[str]]) -> None:
        self._close = close
        self._previous: dict[int, Any] = {}
        #: When the first SIGINT or SIGTERM arrived (monotonic); later ones are absorbed.
        self.interrupted: float | None = None

    # -- SIGINT and SIGTERM -----------------------------------------------------------------

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # Only where nobody else decided: pytest leaves Python's SIGINT handler in place,
        # and SIGTERM at its default; xdist, a CI wrapper or the user may have their own.
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.interrupted is None:
            self.interrupted = time.monotonic()
            if signum == signal.SIGTERM:
                raise Terminated("SIGTERM")
            raise KeyboardInterrupt
        _say(
            f"dcfire: {'Ctrl-C' if signum == signal.SIGINT else name} again: still undoing "
            f"faults and removing the system ({time.monotonic() - self.interrupted:.1f} s "
            "since the interrupt); wait, or SIGKILL (the helper then undoes what is left, "
            "and the next session removes the rest)"
        )

    def pytest_unconfigure(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            # Interrupted: the process is on its way out; one more Ctrl-C would land in an
            # exit-time finalizer as a raw traceback, so the rest are ignored, not restored.
            signal.signal(signum, signal.SIG_IGN if self.interrupted is not None else previous)
        self._previous.clear()

    # -- pytest-timeout, method "thread" --------------------------------------------------

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        method = settings.method
        if method == "signal" and threading.current_thread() is threading.main_thread():
            return None  # pytest-timeout raises in the test: teardown runs as usual
        try:
            timeout_timer = importlib.import_module("pytest_timeout").timeout_timer
        except (ImportError, AttributeError):  # pragma: no cover - hook comes with it
            return None

        def expire() -> None:
            self.emergency(
                f"pytest-timeout ({settings.timeout} s, method {method}) expired in "
                f"{item.nodeid}; undoing every fault and removing the system before it exits"
            )
            timeout_timer(item, settings)

        timer = threading.Timer(settings.timeout, expire)
        timer.name = f"dcfire timeout {item.nodeid}"
        timer.daemon = True

        def cancel() -> None:
            timer.cancel()
            timer.join()

        item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's protocol
        timer.start()
        return True

    def emergency(self, why: str) -> None:
        """Undo and remove everything now, from whatever thread; never raises."""
        started = time.monotonic()
        _say(f"dcfire: {why}")
        try:
            problems = self._close(why)
        except BaseException as exc:  # the process is about to die anyway: say it, go on
            problems = [f"{type(exc).__name__}: {exc}"]
        for problem in problems:
            _say(f"dcfire: cleanup problem: {problem}")
        _say(f"dcfire: cleaned up in {time.monotonic() - started:.1f} s")


def _say(line: str) -> None:
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


__all__ = ["Guard", "Terminated"]
