"""`DrillWorkload`: the `Workload` that `dcfire.workload(op)` returns, wired to the test's
evidence (evidence.py). Apart from it so that the plugin's import does not load the history
checkers: this module is imported when a test first asks for a workload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_dcfire.evidence import DrillEvidence, WorkloadRecord, to_verdict
from pytest_dcfire.history.checkers import Availability, LostWrites
from pytest_dcfire.history.counters import CounterCheck, SetCheck
from pytest_dcfire.history.history import History
from pytest_dcfire.history.isolation import Isolation
from pytest_dcfire.history.linearizability import Linearizability
from pytest_dcfire.history.workload import Workload

if TYPE_CHECKING:
    from pytest_dcfire.history.models import Model

_R = TypeVar("_R")


class DrillWorkload(Workload):
    """A `Workload` run by `dcfire.workload()`: marked with the test's fires, and whose
    checker calls land in the report."""

    def __init__(
        self,
        op: Callable[[int], Any],
        evidence: DrillEvidence,
        burning: Callable[[], Any],
        **kw: Any,
    ) -> None:
        super().__init__(op, **kw)
        self._evidence = evidence
        self._burning = burning
        self.record = WorkloadRecord(self.name, self.history)

    def start(self) -> DrillWorkload:
        ev = self._evidence
        names = {w.name for w in ev.workloads}
        if self.name in names:  # two workloads of one op: tell them apart in the report
            self.name = f"{self.name}#{len(ev.workloads) + 1}"
            self.record.name = self.name
        ev.workloads.append(self.record)
        for fire in self._burning():  # a marker's fire ignited before the body started
            self.mark("ignite", fire.record.ignited, fire.spec.describe())
            self.mark("burning", fire.record.in_place, fire.spec.describe())
        with ev._lock:
            ev._running.append(self)
        super().start()
        return self

    def stop(self) -> History:
        with self._evidence._lock:
            if self in self._evidence._running:
                self._evidence._running.remove(self)
        return super().stop()

    def lost_writes(
        self,
        present: Iterable[Any] | Mapping[Any, Any],
        writes: Iterable[str] | None = None,
        key: Callable[[Any], Any] | None = None,
    ) -> LostWrites:
        """`History.lost_writes`, recorded for the report (and `dcfire_lost_writes`):
        `present` holds the values read back (the workload wrote its `n`: 1, 2, 3, ...)."""
        result = self.history.lost_writes(present, writes=writes, key=key)
        self.record.lost = result
        verdict = to_verdict(result, workload=self.name)
        assert verdict is not None
        self._evidence.add_verdict(verdict)
        if self.record.availability is not None:  # keep the RPO in the availability
            self.availability(self.record.availability.stable)
        return result

    def availability(self, stable: int = 3, present: Any = None) -> Availability:
        """`History.availability` (RTO from the last ignition), recorded for the report."""
        result = self.history.availability(stable=stable, present=present, lost=self.record.lost)
        if result.lost is not None and self.record.lost is None:
            self.record.lost = result.lost
        self.record.availability = result
        verdict = to_verdict(result, workload=self.name)
        assert verdict is not None
        self._evidence.add_verdict(verdict)
        return result

    def linearizable(self, model: str | Model = "register", **options: Any) -> Linearizability:
        """`History.linearizable`, recorded for the report."""
        return self._recorded(self.history.linearizable(model, **options))

    def isolation(self, level: str = "serializable") -> Isolation:
        """`History.isolation` (anomalies with their cycles), recorded for the report."""
        return self._recorded(self.history.isolation(level))

    def counter(self, initial: float = 0) -> CounterCheck:
        """`History.counter`, recorded for the report."""
        return self._recorded(self.history.counter(initial))

    def set(self, final: Any = None) -> SetCheck:
        """`History.set`, recorded for the report."""
        return self._recorded(self.history.set(final))

    def _recorded(self, result: _R) -> _R:
        verdict = to_verdict(result, workload=self.name)
        assert verdict is not None
        self._evidence.add_verdict(verdict)
        return result
