"""The terminal summary of the session's fires and link faults: one row each, the numbers
that matter."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_dcfire.linkfaults import LinkFault
from pytest_dcfire.timeline import FireRecord


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def fire_table(records_in: Iterable[FireRecord]) -> list[str]:
    """Rows: test, sites and mode, containers, cut latency, skew, restore, healthy, RTO,
    and, where a workload's checkers measured them, RPO and lost writes."""
    records = list(records_in)
    header = (
        "test",
        "fire",
        "n",
        "cut ms",
        "skew ms",
        "restore ms",
        "healthy ms",
        "rto s",
        "rpo s",
        "lost",
        "via",
    )
    rows = [header]
    for r in records:
        rows.append(
            (
                r.test.rsplit("::", 1)[-1] or "-",
                r.spec.describe(),
                str(len(r.targets)),
                _ms(r.cut_ms),
                f"{r.skew_ms:.1f}",
                _ms(r.restore_ms),
                _ms(r.healthy_ms),
                "-" if r.rto_s is None else f"{r.rto_s:.2f}",
                "-" if r.rpo_s is None else f"{r.rpo_s:.2f}",
                "-" if r.lost_writes is None else str(r.lost_writes),
                "+".join(dict.fromkeys(r.methods)) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for r in records:
        for error in r.errors:
            lines.append(f"! {r.spec.describe()}: {error}")
    return lines


def link_fault_table(faults_in: Iterable[LinkFault]) -> list[str]:
    """Rows: test, kind, target, what was done, links touched, how (each part's method),
    set-up ms, seconds active."""
    faults = list(faults_in)
    header = ("test", "link fault", "target", "what", "links", "via", "set-up ms", "lasted s")
    rows = [header]
    for f in faults:
        lasted = "-" if f.restored is None else f"{f.restored - f.started:.2f}"
        rows.append(
            (
                f.test.rsplit("::", 1)[-1] or "-",
                f.kind,
                f.target,
                f.detail,
                str(len(f.proxies)),
                f.via,
                _ms(f.setup_ms),
                lasted,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
