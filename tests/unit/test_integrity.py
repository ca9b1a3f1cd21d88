"""The half-restored gate and the SIGTERM guard, with fakes for the running system."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_dcfire.errors import StartupError
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.integrity import Integrity
from pytest_dcfire.interrupts import Guard, Terminated
from pytest_dcfire.timeline import FireRecord, Timeline


@dataclass
class FakeSystem:
    healthy: bool = True
    checked: list[str] = field(default_factory=list)

    def in_site(self, site: str) -> list[str]:
        return [f"svc@{site}"]

    def wait_healthy(self, handles: list[str]) -> None:
        self.checked.extend(handles)
        if not self.healthy:
            raise StartupError(
                "service svc@east (site east) not healthy; waited 3 s. Last log lines:\n  boom"
            )


@dataclass
class FakeState:
    system: Any
    timeline: Timeline = field(default_factory=Timeline)


class Item:
    fixturenames = ("dcfire_topology",)


def fire(timeline: Timeline, healthy_ms: float | None, errors: tuple[str, ...] = ()) -> None:
    record = FireRecord(FireSpec(("east",)), "test_x.py::test_burn", ["svc@east"])
    record.restored = 1.0
    record.healthy_ms = healthy_ms
    record.errors.extend(errors)
    timeline.add(record)


def test_a_healthy_restore_costs_nothing() -> None:
    state = FakeState(FakeSystem())
    gate = Integrity(lambda: state)
    fire(state.timeline, healthy_ms=12.0)
    gate.pytest_runtest_setup(Item())  # type: ignore[arg-type]
    assert state.system.checked == []


def test_a_site_that_recovers_late_lets_the_next_test_run() -> None:
    state = FakeState(FakeSystem(healthy=True))
    gate = Integrity(lambda: state)
    fire(state.timeline, healthy_ms=None)
    gate.pytest_runtest_setup(Item())  # type: ignore[arg-type]
    assert state.system.checked == ["svc@east"]
    assert gate.broken is None


def test_a_broken_site_stops_every_later_test_that_uses_the_system() -> None:
    state = FakeState(FakeSystem(healthy=False))
    gate = Integrity(lambda: state)
    fire(state.timeline, healthy_ms=None, errors=("undo storage: boom",))
    for _ in range(2):
        with pytest.raises(
            pytest.fail.Exception,
            match=r"after the fire of east in test_x\.py::test_burn: service svc@east",
        ):
            gate.pytest_runtest_setup(Item())  # type: ignore[arg-type]
    assert state.system.checked == ["svc@east"]  # checked once, then failed fast

    class Plain:
        fixturenames = ("tmp_path",)

    gate.pytest_runtest_setup(Plain())  # type: ignore[arg-type]  # tests without it still run


def test_sigterm_becomes_a_keyboard_interrupt() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    guard = Guard(lambda why: [])
    try:
        guard.install()
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        assert isinstance(Terminated(), KeyboardInterrupt)
    finally:
        guard.pytest_unconfigure()
        # Interrupted: the process is on its way out, so later signals are ignored rather
        # than handed back (a third Ctrl-C would land in an exit-time finalizer).
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.signal(signal.SIGTERM, previous)


def test_an_uninterrupted_session_hands_the_handlers_back() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    guard = Guard(lambda why: [])
    try:
        guard.install()
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        guard.pytest_unconfigure()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_handler_of_someone_else_is_left_alone() -> None:
    def theirs(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        Guard(lambda why: []).install()
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)
