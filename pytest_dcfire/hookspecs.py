"""Hooks pytest-dcfire calls, so a conftest can log fires, add faults of its own, or add its
own checker's verdict to the report.

Implement them in a conftest.py or a plugin like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_dcfire.fire import Fire
    from pytest_dcfire.history.history import History
    from pytest_dcfire.timeline import FireRecord


def pytest_dcfire_before_ignite(fire: Fire, item: pytest.Item | None) -> None:
    """Called just before `fire` cuts its sites; `item` is the running test (or None)."""


def pytest_dcfire_after_ignite(fire: Fire, item: pytest.Item | None) -> None:
    """Called once every cut of `fire` is in place; `fire.record` has the timings."""


def pytest_dcfire_before_restore(fire: Fire, item: pytest.Item | None) -> None:
    """Called before `fire` is undone (also after a failing test or an interrupt)."""


def pytest_dcfire_after_restore(fire: Fire, item: pytest.Item | None) -> None:
    """Called once `fire` is undone and its sites' health checks pass again."""


def pytest_dcfire_check(
    item: pytest.Item, history: History | None, fires: tuple[FireRecord, ...]
) -> object:
    """Judge a burning test after its fires are out, for the report: called once per workload
    the test ran (`history`, marked with `ignite` / `restore`), or once with `history=None`
    when it ran none. `fires` are the test's `FireRecord`s (timings, skew, RTO).

    Return None (nothing to say), a `pytest_dcfire.evidence.Verdict`, a checker result
    (`LostWrites`, `Availability`, `Linearizability`), a `(name, ok, text)` tuple, or a list of
    these. Verdicts go to the report; they do not change the test's outcome (assert in the
    test for that)."""
