"""What an xdist worker sends its controller at the end: its part of the HTML report and its
terminal tables (fires, link faults), which the controller writes and prints as one.

The other way, the controller hands each worker the shared copy's description, the fire lock
and its session burn through `workerinput` (share.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_dcfire.evidence import SessionEvidence
    from pytest_dcfire.timeline import Timeline

#: `workeroutput` keys: the worker's report part (report.html.parts), its terminal tables.
REPORT_KEY = "dcfire_report"
TABLES_KEY = "dcfire_tables"

Tables = tuple[list[str], list[str]]


def send_tables(config: Any, tables: Callable[[], Tables]) -> None:
    """In a worker: hand over its terminal tables (its own terminal is not shown)."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[TABLES_KEY] = tables()


def send_report(config: Any, evidence: SessionEvidence, timeline: Timeline) -> bool:
    """In a worker: hand over its part of the report and say True; elsewhere False."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return False
    from pytest_dcfire.report.html import parts  # the report loads only when one is written

    worker = str(workerinput.get("workerid", "w"))
    config.workeroutput[REPORT_KEY] = parts(evidence, timeline, prefix=f"{worker}-")
    return True


def receive(node: Any, evidence: SessionEvidence) -> None:
    """In the controller, when a worker ends: keep its report part and its tables."""
    output = getattr(node, "workeroutput", {})
    share = output.get(REPORT_KEY)
    if share is not None:
        evidence.shares.append(share)
    fires, link_faults = output.get(TABLES_KEY, ([], []))
    if fires or link_faults:  # the worker's terminal is not shown: print its tables here
        worker = str(getattr(node, "workerinput", {}).get("workerid", "worker"))
        evidence.worker_tables[worker] = (list(fires), list(link_faults))
