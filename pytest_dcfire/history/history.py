"""`History`: the recorded calls and fire marks (model.py) with the checkers as methods:
`history.lost_writes(...)`, `.availability()`, `.linearizable()`, `.isolation()`, ...

Above both the model and the checkers, so that the model never imports a checker: a checker
takes any `BaseHistory` (or a list of operations) and returns its verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pytest_dcfire.history.checkers import Availability, LostWrites, availability, lost_writes
from pytest_dcfire.history.counters import CounterCheck, SetCheck, check_counter, check_set
from pytest_dcfire.history.isolation import Isolation, check_isolation
from pytest_dcfire.history.linearizability import Linearizability, check
from pytest_dcfire.history.model import BaseHistory, Op
from pytest_dcfire.history.models import Model


class History(BaseHistory):
    """A `BaseHistory` (the calls a workload made and the fire marks) whose methods run
    the checkers on it; what workloads record and the loaders return."""

    # -- checkers ------------------------------------------------------------------------

    def lost_writes(
        self,
        present: Iterable[Any] | Mapping[Any, Any],
        writes: Iterable[str] | None = None,
        key: Callable[[Any], Any] | None = None,
    ) -> LostWrites:
        """Acknowledged writes missing from `present` (see `checkers.lost_writes`)."""
        return lost_writes(self, present, writes=writes, key=key)

    def availability(
        self,
        stable: int = 3,
        present: Iterable[Any] | Mapping[Any, Any] | None = None,
        lost: LostWrites | None = None,
    ) -> Availability:
        """Outage windows, RTO and RPO (see `checkers.availability`)."""
        return availability(self, stable=stable, present=present, lost=lost)

    def counter(self, initial: float = 0) -> CounterCheck:
        """Every read of a counter within its bounds, in one pass (see `counters`)."""
        return check_counter(self, initial)

    def set(self, final: Op | None = None) -> SetCheck:
        """Lost, unexpected and vanished elements of a set, in one pass (see `counters`)."""
        return check_set(self, final)

    def isolation(self, level: str = "serializable") -> Isolation:
        """The anomalies of list-append transactions that `level` forbids (see
        `isolation`): "serializable", "snapshot-isolation", "repeatable-read",
        "read-committed"."""
        return check_isolation(self, level)

    def linearizable(
        self,
        model: str | Model = "register",
        *,
        initial: Any = ...,
        timeout: float | None = None,
        max_states: int | None = None,
    ) -> Linearizability:
        """Check linearizability against `model` (see `linearizability.check`)."""
        return check(self, model, initial=initial, timeout=timeout, max_states=max_states)
