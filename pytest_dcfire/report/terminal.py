"""The terminal summary of the session's fires: one row per fire, the numbers that matter."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_dcfire.fire import FireRecord


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def fire_table(records_in: Iterable[FireRecord]) -> list[str]:
    """Rows: test, sites and mode, containers, cut latency, skew, restore, healthy, RTO."""
    records = list(records_in)
    header = ("test", "fire", "n", "cut ms", "skew ms", "restore ms", "healthy ms", "rto s", "via")
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
                "+".join(dict.fromkeys(r.methods)) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for r in records:
        for error in r.errors:
            lines.append(f"! {r.spec.describe()}: {error}")
    return lines
