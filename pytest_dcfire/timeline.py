"""The session's timeline: a `FireRecord` per fire and every link fault, in ignition order,
as the report, the terminal tables and a test's evidence read them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the plugin imports this module in every run
    from pytest_dcfire.faults.timing import FaultTiming as StepTiming
    from pytest_dcfire.firespec import FireSpec
    from pytest_dcfire.linkfaults import LinkFault


@dataclass
class FireRecord:
    """The timeline entry of one fire: what the report and the terminal summary show."""

    spec: FireSpec
    test: str
    targets: list[str]
    ignited_wall: float = 0.0
    ignited: float = 0.0
    cut_ms: float = 0.0
    skew_ms: float = 0.0
    steps: list[StepTiming] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    restored: float | None = None
    restore_ms: float | None = None
    healthy_ms: float | None = None
    rto_s: float | None = None
    rpo_s: float | None = None
    lost_writes: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def in_place(self) -> float:
        """When every step of the fire was in place (`time.monotonic()`): the site is dark."""
        return self.ignited + self.cut_ms / 1000.0


class Timeline:
    """Every fire of the session, in ignition order (thread-safe: workloads may read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[FireRecord] = []
        self.link_faults: list[LinkFault] = []

    def add(self, record: FireRecord) -> None:
        with self._lock:
            self.records.append(record)

    def add_link_fault(self, fault: LinkFault) -> None:
        with self._lock:
            self.link_faults.append(fault)

    def __iter__(self) -> Iterator[FireRecord]:
        with self._lock:
            return iter(list(self.records))

    def __len__(self) -> int:
        return len(self.records)
