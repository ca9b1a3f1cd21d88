"""What one test proved about its fires: the workloads' histories, marked with the fires'
ignitions and restores, and the checkers' verdicts, kept for the report, the terminal table
and the JUnit properties.

`dcfire.workload(op)` returns a `DrillWorkload` (drill_workload.py): a `Workload` whose
history gets an `ignite` mark for every fire of the test that burns while it runs (and a
`restore` mark when it is put out), so that `availability()` measures the RTO from the right
moment, and whose checker methods also record their verdict here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the checkers load on first use: importing the plugin stays cheap
    import pluggy

    from pytest_dcfire.history.checkers import Availability, LostWrites
    from pytest_dcfire.history.history import History
    from pytest_dcfire.history.workload import Workload
    from pytest_dcfire.linkfaults import LinkFault
    from pytest_dcfire.timeline import FireRecord


@dataclass
class Verdict:
    """One checker's answer about a test, as the report shows it: `ok` is None when the
    checker only measured something (an RTO) rather than judged it."""

    name: str
    ok: bool | None
    summary: str
    detail: str = ""
    workload: str = ""


def to_verdict(value: Any, name: str | None = None, workload: str = "") -> Verdict | None:
    """Turn what a checker (or a `pytest_dcfire_check` hook) returned into a `Verdict`:
    a Verdict, a LostWrites / Availability / Linearizability, a `(name, ok, text)` tuple,
    a bool, or a string (a measurement). None stays None (the hook had nothing to say)."""
    from pytest_dcfire.history.checkers import Availability, LostWrites
    from pytest_dcfire.history.counters import CounterCheck, SetCheck
    from pytest_dcfire.history.isolation import Isolation
    from pytest_dcfire.history.linearizability import Linearizability

    if value is None:
        return None
    if isinstance(value, Verdict):
        if workload and not value.workload:
            value.workload = workload
        return value
    if isinstance(value, LostWrites):
        summary = (
            "no acknowledged write lost"
            if value.ok
            else f"{len(value.lost)} acknowledged writes lost, RPO {value.rpo:.3f} s"
            + (f", {len(value.phantoms)} phantom values" if value.phantoms else "")
        )
        if value.maybe_lost:
            summary += f" ({len(value.maybe_lost)} indeterminate writes missing: allowed)"
        return Verdict(name or "lost writes", value.ok, summary, str(value), workload)
    if isinstance(value, Availability):
        if value.rto is not None:
            summary = f"RTO {value.rto:.3f} s"
        elif value.ignited is None:
            summary = "RTO unknown: no fire burned during the workload"
        else:
            summary = (
                f"not recovered while it ran: no {value.stable} consecutive successes after "
                "the last ignition"
            )
        summary += f"; {value.succeeded}/{value.attempts} ok, {len(value.outages)} outages"
        ok = None if value.ignited is None or value.recovered_at is not None else False
        return Verdict(name or "availability", ok, summary, str(value), workload)
    if isinstance(value, (Isolation, CounterCheck, SetCheck)):
        text = str(value)
        label = value.level if isinstance(value, Isolation) else type(value).__name__
        names = {"CounterCheck": "counter", "SetCheck": "set"}
        first = text.splitlines()[0] if text else label
        return Verdict(name or names.get(label, "isolation"), value.ok, first, text, workload)
    if isinstance(value, Linearizability):
        text = str(value)
        first = text.splitlines()[0] if text else ("linearizable" if value.ok else "not")
        return Verdict(name or "linearizable", bool(value.ok), first, text, workload)
    if isinstance(value, tuple) and len(value) == 3:
        label, ok, text = value
        return Verdict(str(label), None if ok is None else bool(ok), str(text), "", workload)
    if isinstance(value, bool):
        return Verdict(name or "check", value, "ok" if value else "failed", "", workload)
    if isinstance(value, str):
        return Verdict(name or "note", None, value, "", workload)
    raise TypeError(
        f"a dcfire verdict must be a Verdict, a checker result, a (name, ok, text) tuple, "
        f"a bool or a str; got {type(value).__name__}: {value!r}"
    )


@dataclass
class WorkloadRecord:
    """A workload of a test, with what its checkers found."""

    name: str
    history: History
    lost: LostWrites | None = None
    availability: Availability | None = None


@dataclass
class DrillEvidence:
    """Everything one test's `dcfire` saw: its fires, workloads and verdicts."""

    nodeid: str
    fires: list[FireRecord] = field(default_factory=list)
    workloads: list[WorkloadRecord] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    link_faults: list[LinkFault] = field(default_factory=list)
    outcome: str = ""
    #: Why the test is expected to fail (`xfail(reason=...)`), when it is.
    reason: str = ""
    #: The seeds of the test's `dcfire.chaos()` schedules (printed for replay).
    seeds: list[int] = field(default_factory=list)
    #: The workloads running now (drill_workload.DrillWorkload adds and removes itself).
    _running: list[Workload] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- what the controller tells it (records only: evidence knows no controller) ----------

    def ignited(self, record: FireRecord) -> None:
        self.fires.append(record)
        for workload in self.running():
            workload.mark("ignite", record.ignited, record.spec.describe())
            workload.mark("burning", record.in_place, record.spec.describe())

    def restored(self, record: FireRecord) -> None:
        if record.restored is None or not record.steps:
            return
        for workload in self.running():
            workload.mark("restore", record.restored, record.spec.describe())

    def link_fault(self, fault: LinkFault) -> None:
        """A brownout or a partition between sites began (`fault` is a linkfaults.LinkFault:
        kind, target, detail, started, restored); it is drawn on the timeline and marked in
        the running workloads' histories (`brownout` / `partition`; `...-lifted` at the end,
        see `finish`)."""
        self.link_faults.append(fault)
        for workload in self.running():
            workload.mark(fault.kind, fault.started, fault.target)

    def running(self) -> list[Workload]:
        with self._lock:
            return list(self._running)

    # -- verdicts ---------------------------------------------------------------------------

    def add_verdict(self, verdict: Verdict) -> None:
        """Record a verdict; a later one of the same name and workload replaces it."""
        self.verdicts = [
            v
            for v in self.verdicts
            if not (v.name == verdict.name and v.workload == verdict.workload)
        ]
        self.verdicts.append(verdict)

    @property
    def rto_s(self) -> float | None:
        values = [f.rto_s for f in self.fires if f.rto_s is not None]
        return max(values) if values else None

    @property
    def skew_ms(self) -> float | None:
        return max((f.skew_ms for f in self.fires), default=None)

    @property
    def lost_writes(self) -> int | None:
        counts = [len(w.lost.lost) for w in self.workloads if w.lost is not None]
        return sum(counts) if counts else None

    def finish(self, hook: pluggy.HookRelay | None, item: pytest.Item | None) -> None:
        """After the fires are out: availability of every workload (RTO onto the fire it
        measures), the conftest checkers, and the JUnit properties."""
        for fault in self.link_faults:  # lifted by restore(), or by the test itself
            if fault.restored is None:
                continue
            for record in self.workloads:
                ops = record.history.ops
                if ops and ops[0].invoke <= fault.restored <= ops[-1].invoke:
                    record.history.mark(f"{fault.kind}-lifted", fault.restored, fault.target)
        for record in self.workloads:
            if record.availability is None:
                av = record.history.availability(lost=record.lost)
                record.availability = av
                verdict = to_verdict(av, workload=record.name)
                assert verdict is not None
                self.add_verdict(verdict)
            self._attribute(record)
        if hook is not None and self.fires:
            fires = tuple(self.fires)
            histories: Iterable[History | None] = [w.history for w in self.workloads] or [None]
            names = [w.name for w in self.workloads] or [""]
            for name, history in zip(names, histories, strict=True):
                for result in hook.pytest_dcfire_check(item=item, history=history, fires=fires):
                    for value in result if isinstance(result, list) else [result]:
                        verdict = to_verdict(value, workload=name)
                        if verdict is not None:
                            self.add_verdict(verdict)
        if item is not None and self.fires:
            props = getattr(item, "user_properties", None)
            if props is not None:
                for key, value in (
                    ("dcfire_rto_s", self.rto_s),
                    ("dcfire_skew_ms", self.skew_ms),
                    ("dcfire_lost_writes", self.lost_writes),
                ):
                    if value is not None:
                        props.append((key, round(value, 3) if isinstance(value, float) else value))

    def _attribute(self, record: WorkloadRecord) -> None:
        """Put a workload's RTO, RPO and lost writes on the fire its last ignition marks."""
        ignitions = record.history.marks_named("ignite")
        if not ignitions:
            return
        last = ignitions[-1].time
        fire = next((f for f in self.fires if f.ignited == last), None)
        if fire is None:
            return
        av = record.availability
        if fire.rto_s is None and av is not None and av.rto is not None:
            fire.rto_s = av.rto
        if record.lost is not None:
            fire.lost_writes = (fire.lost_writes or 0) + len(record.lost.lost)
            fire.rpo_s = max(fire.rpo_s or 0.0, record.lost.rpo)


class SessionEvidence:
    """Every test's evidence, in the order the tests ran: what the report renders."""

    def __init__(self) -> None:
        self.drills: dict[str, DrillEvidence] = {}
        self.report_path: str | None = None
        #: Report parts sent by pytest-xdist workers (see report.html.parts).
        self.shares: list[dict[str, Any]] = []
        #: Each xdist worker's terminal tables (fires, link faults), printed by the controller.
        self.worker_tables: dict[str, tuple[list[str], list[str]]] = {}
        #: Every test that ran while the session burn (--dcfire-burn) was on: its outcome.
        self.under_burn: dict[str, str] = {}
        #: What the session burn was ("east [fire]"), for the report's heading.
        self.burn_label = ""

    def add(self, evidence: DrillEvidence) -> None:
        self.drills[evidence.nodeid] = evidence

    def outcome(self, report: pytest.TestReport) -> None:
        """Keep each test's outcome (xfailed and xpassed spelled out, like pytest does)."""
        evidence = self.drills.get(report.nodeid)
        if evidence is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                evidence.outcome = "xfailed" if report.skipped else "xpassed"
                evidence.reason = str(report.wasxfail or "")
            elif report.when == "setup" and report.failed:
                evidence.outcome = "error"
            else:
                evidence.outcome = report.outcome
        elif report.when == "teardown" and report.failed and evidence.outcome in ("", "passed"):
            evidence.outcome = "error"


EVIDENCE_KEY = pytest.StashKey[SessionEvidence]()


def session_evidence(config: pytest.Config) -> SessionEvidence:
    if EVIDENCE_KEY not in config.stash:
        config.stash[EVIDENCE_KEY] = SessionEvidence()
    return config.stash[EVIDENCE_KEY]
