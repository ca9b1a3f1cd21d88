"""Fault steps: one reversible fault on the containers of a fire, as the fault backends and
the links build them and the fire controller applies and undoes them (in reverse order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_dcfire.faults.timing import FaultTiming as StepTiming


class Step(Protocol):
    """One reversible fault on the containers of a fire."""

    effect: str

    def apply(self) -> StepTiming: ...

    def undo(self) -> None: ...


@dataclass
class CallStep:
    """A `Step` made of two callables: how the fault backends build their steps."""

    effect: str
    do: Callable[[], StepTiming]
    undo_fn: Callable[[], object]

    def apply(self) -> StepTiming:
        return self.do()

    def undo(self) -> None:
        self.undo_fn()


#: (effect, spec, handles) -> Step; a partition asks for effect "peers" with its PartitionSpec.
StepFactory = Callable[[str, Any, Sequence[Any]], Step]
