"""What the HTML report costs: render time and size for one burning test whose workload made
1k, 10k and 100k calls (4 threads, a tenth of them failing while the site burns), and the
same page with 20 such tests.

    python benchmarks/bench_report.py

The timeline draws consecutive calls of one outcome that touch on screen as one segment, so
the size grows with the screen, not with the number of calls.
"""

from __future__ import annotations

import statistics
import sys
import time

from pytest_dcfire.evidence import DrillEvidence, SessionEvidence, WorkloadRecord
from pytest_dcfire.faults.timing import FaultTiming as StepTiming
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.history import History, Op
from pytest_dcfire.report.html import render
from pytest_dcfire.timeline import FireRecord


def drill(name: str, calls: int) -> tuple[DrillEvidence, FireRecord]:
    seconds = 10.0
    step = seconds / calls
    history = History()
    for n in range(calls):
        t = n * step
        kind = "fail" if 0.4 * calls <= n < 0.5 * calls else ("info" if n % 97 == 0 else "ok")
        history.append(Op("write", n, kind, t, t + step * 3, process=n % 4, id=n))
    record = FireRecord(
        FireSpec(("pangyo",)), name, [f"svc{i}@pangyo" for i in range(10)], ignited=4.0
    )
    record.steps = [
        StepTiming("network", "nftables", 40.0, {f"svc{i}@pangyo": 30 + i for i in range(10)}),
        StepTiming("storage", "fsfreeze", 5.0, {f"svc{i}@pangyo": 2.0 for i in range(10)}),
    ]
    record.cut_ms, record.skew_ms, record.restored = 45.0, 9.0, 6.0
    history.mark("ignite", 4.0, "pangyo [fire]")
    history.mark("restore", 6.0, "pangyo [fire]")
    evidence = DrillEvidence(name, fires=[record])
    workload = WorkloadRecord("writes", history)
    workload.lost = history.lost_writes([n for n in range(calls) if n % 50])
    evidence.workloads.append(workload)
    evidence.finish(None, None)
    return evidence, record


def measure(tests: int, calls: int, repeat: int = 3) -> tuple[float, int]:
    session = SessionEvidence()
    records = []
    for i in range(tests):
        evidence, record = drill(f"test_mod.py::test_{i}", calls)
        session.add(evidence)
        records.append(record)
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        page = render(session, records)
        times.append(time.perf_counter() - started)
        size = len(page.encode())
    return statistics.median(times), size


def main() -> None:
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| tests | calls per test | render ms (median of 3) | size KB |")
    print("| ----- | -------------- | ----------------------- | ------- |")
    for tests, calls in ((1, 1_000), (1, 10_000), (1, 100_000), (20, 10_000)):
        seconds, size = measure(tests, calls)
        print(f"| {tests} | {calls:,} | {seconds * 1000:.0f} | {size / 1024:.0f} |")


if __name__ == "__main__":
    main()
