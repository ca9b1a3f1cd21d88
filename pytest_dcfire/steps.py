"""Fault steps: one reversible fault on the containers of a fire, as the fault backends and
the links build them and the fire controller applies and undoes them (in reverse order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.modes import Effect


class Step(Protocol):
    """One reversible fault on the containers of a fire."""

    @property
    def effect(self) -> Effect: ...

    def apply(self) -> StepTiming: ...

    def undo(self) -> None: ...


@dataclass
class CallStep:
    """A `Step` made of two callables: how the fault backends build their steps."""

    effect: Effect
    do: Callable[[], StepTiming]
    undo_fn: Callable[[], object]

    def apply(self) -> StepTiming:
        return self.do()

    def undo(self) -> None:
        self.undo_fn()
