"""When a fault (or its undo) took effect on each target: the fire timeline's raw numbers.

Kept free of Docker imports so that the fire controller (pure logic) can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaultTiming:
    """`offsets_ms` maps each target's name to milliseconds from the start of the call to the
    moment its fault was in place; `latency_ms` is the largest."""

    effect: str
    method: str
    latency_ms: float
    offsets_ms: dict[str, float] = field(default_factory=dict)

    @property
    def skew_ms(self) -> float:
        values = list(self.offsets_ms.values())
        return (max(values) - min(values)) if len(values) > 1 else 0.0
