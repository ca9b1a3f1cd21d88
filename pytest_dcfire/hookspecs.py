"""Hooks pytest-dcfire calls, so a conftest can log fires or add faults of its own.

Implement them in a conftest.py or a plugin like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_dcfire.fire import Fire


def pytest_dcfire_before_ignite(fire: Fire, item: Any) -> None:
    """Called just before `fire` cuts its sites; `item` is the running test (or None)."""


def pytest_dcfire_after_ignite(fire: Fire, item: Any) -> None:
    """Called once every cut of `fire` is in place; `fire.record` has the timings."""


def pytest_dcfire_before_restore(fire: Fire, item: Any) -> None:
    """Called before `fire` is undone (also after a failing test or an interrupt)."""


def pytest_dcfire_after_restore(fire: Fire, item: Any) -> None:
    """Called once `fire` is undone and its sites' health checks pass again."""
