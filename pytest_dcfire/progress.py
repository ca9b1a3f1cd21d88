"""Progress lines on the terminal: on lines of their own, never inside captured output.

The system starts inside the first test's setup, often from several threads (builds, waves,
health waits), while pytest captures output and has half-written its progress line
(`tests/test_x.py ..`). Each line suspends capture under one lock (two threads suspending
and resuming capture at once would let a line fall into the test's captured output), ends
pytest's line first, and puts the file's prefix back afterwards so that the next test's
letter does not land at the start of a line of its own.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire.errors import strip_ansi


class TerminalProgress:
    """The `progress` callable of a session: `dcfire: ...` lines on the terminal."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.verbose = config.get_verbosity() > 0
        self._lock = threading.Lock()
        #: The file prefix pytest had written when our lines interrupted it.
        self._interrupted: Path | None = None

    def __call__(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with self._lock:
            if capman is not None:
                with capman.global_and_fixture_disabled():
                    self._write(reporter, line)
            else:
                self._write(reporter, line)

    def _write(self, reporter: Any, line: str) -> None:
        current = getattr(reporter, "currentfspath", None)
        if current:  # write_line ends pytest's line (a file's path, or -v's test id)
            if isinstance(current, Path):
                self._interrupted = current
        elif getattr(reporter._tw, "width_of_current_line", 0):
            reporter._tw.line()  # -q: letters without a file prefix, which write_line ignores
        reporter.write_line(f"dcfire: {strip_ansi(line)}")  # ends pytest's line first

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before the terminal writes a test's letter: put back the file prefix that our
        lines interrupted, so the letter lands on pytest's progress line."""
        if self._interrupted is not None:
            with self._lock:
                self.resume()

    def resume(self) -> None:
        interrupted, self._interrupted = self._interrupted, None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if interrupted is None or reporter is None or reporter.currentfspath is not None:
            return
        if reporter.showlongtestinfo or not reporter.showfspath:
            return  # -v rewrites its own prefix; -q has none
        reporter.write(os.path.relpath(interrupted, reporter.startpath) + " ")
        reporter.currentfspath = interrupted
