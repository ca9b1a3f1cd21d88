"""A test that fails while a site is dark says so where the failure is read.

A blackholed port looks like any other bug from inside a test (`TimeoutError: timed out`,
or a hang until pytest-timeout fires); the report section names the sites that were dark,
since when, and which containers, so the reader knows the failure happened under fire.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

#: Outcomes of the tests that ran under the session burn, for the HTML report.
OUTCOME_PHASES = ("setup", "call", "teardown")


def _clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def dark_section(burn: Any, item: pytest.Item) -> str:
    """The lines of the `dcfire` report section ("" when nothing was dark)."""
    lines = []
    session = burn.dark_now()
    if session:
        lines.append(session)
    controller = getattr(item, "funcargs", {}).get("dcfire")
    now = time.time()
    for fire in getattr(controller, "fires", ()):
        record = fire.record
        if not record.steps:
            continue
        state = "still dark" if fire.burning else "restored before this report"
        lines.append(
            f"{fire.spec.describe()} ignited by this test at {_clock(record.ignited_wall)} "
            f"({now - record.ignited_wall:.1f} s before this report), {state}; containers: "
            f"{', '.join(record.targets) or 'none'}"
        )
    if not lines:
        return ""
    lines.append(
        "a dark site blackholes its ports: connections hang (no refusal), so a timeout "
        "here is what the outage looks like to a client"
    )
    return "\n".join(lines)


def under_burn(evidence: Any, burn: Any, report: pytest.TestReport) -> None:
    """Keep the outcome of every test that ran while the session burn was on."""
    if not burn or not burn.burning() or report.when not in OUTCOME_PHASES:
        return
    seen = evidence.under_burn
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            seen[report.nodeid] = "xfailed" if report.skipped else "xpassed"
        elif report.when == "setup" and report.failed:
            seen[report.nodeid] = "error"
        else:
            seen[report.nodeid] = report.outcome
    elif report.when == "teardown" and report.failed and seen.get(report.nodeid) == "passed":
        seen[report.nodeid] = "error"


__all__ = ["dark_section", "under_burn"]
