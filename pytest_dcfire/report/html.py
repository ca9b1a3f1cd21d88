"""The session's report as one self-contained HTML file (inline CSS and SVG, no script, no
network): what a reviewer opens from a CI artifact to see what each fire cost.

- a table of the session's fires: cut latency, skew, restore, RTO, RPO, lost writes;
- beside it, a table of its link faults (brownouts, partitions), as the terminal shows them;
- per test: an SVG timeline (the fires and link faults as bands, ignition and restore, every
  workload call as a segment coloured ok / fail / info, the lost writes, the RTO), each
  container's cut offset, the checkers' verdicts, and why an xfail test is expected to fail.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_dcfire.evidence import DrillEvidence, SessionEvidence, WorkloadRecord
    from pytest_dcfire.linkfaults import LinkFault
    from pytest_dcfire.timeline import FireRecord

DASH = "\u2013"  # an en dash: "not measured"

COLORS = {"ok": "#2f9e44", "fail": "#e03131", "info": "#f59f00"}
MODE_COLORS = {
    "fire": "#e8590c",
    "power-loss": "#c92a2a",
    "crash": "#a61e4d",
    "partition": "#7048e8",
    "freeze": "#1c7ed6",
}
#: Link faults' bands (a partition of two sites is a WAN cut: the colour of a partition).
LINK_COLORS = {
    "brownout": "#868e96",
    "partition": "#7048e8",
    "one-way": "#9775fa",
    "flaky": "#f08c00",
    "disk": "#c92a2a",
}
OUTCOME_CLASS = {
    "passed": "ok",
    "xfailed": "warn",
    "failed": "bad",
    "error": "bad",
    "xpassed": "bad",
    "skipped": "muted",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#212529;margin:24px 32px;background:#fff;max-width:1320px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:4px}
h3{font-size:15px;margin:0 0 6px;font-family:ui-monospace,"DejaVu Sans Mono",monospace;
 word-break:break-all}
.meta{color:#6c757d;margin:0 0 12px}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:4px 10px;border-bottom:1px solid #e9ecef;text-align:left;vertical-align:top}
th{background:#f1f3f5;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.test{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;max-width:520px}
td.nowrap{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 font-family:system-ui,sans-serif;vertical-align:1px}
.ok{background:#d3f9d8;color:#2b8a3e}.bad{background:#ffe3e3;color:#c92a2a}
.warn{background:#fff3bf;color:#e67700}.muted{background:#e9ecef;color:#495057}
section.test{border:1px solid #dee2e6;border-radius:6px;padding:12px 16px;margin:14px 0}
.facts{color:#495057;margin:0 0 8px}.facts b{color:#212529}
svg{display:block;margin:6px 0;max-width:100%;height:auto}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif}
details pre{background:#f8f9fa;padding:8px;border-radius:4px;overflow-x:auto;font-size:12px;
 margin:4px 0}
summary{cursor:pointer;color:#495057}
.lost{color:#c92a2a;font-weight:600}
.reason{color:#e67700;margin:0 0 8px}
"""


def write_report(
    path: str,
    evidence: SessionEvidence,
    timeline: Iterable[FireRecord],
    more: Sequence[Parts] = (),
) -> str:
    """Render and write the report; return the path."""
    text = render(evidence, timeline, more)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1] or nodeid


def _breakable(text: str, after: str = "_") -> str:
    """Escaped text that may wrap after `after` characters and before a `[`, not mid-word."""
    escaped = _e(text).replace(after, after + "<wbr>")
    return escaped.replace("[", "<wbr>[")


def render(
    evidence: SessionEvidence, timeline: Iterable[FireRecord], more: Sequence[Parts] = ()
) -> str:
    """The whole page: this process's fires and tests, and `more` from other processes
    (pytest-xdist workers send theirs as `parts`)."""
    return page([parts(evidence, timeline), *more])


#: One process's share of the report, in plain types (xdist sends it from worker to
#: controller): rendered table rows and test sections, and the counts of the headline.
Parts = dict[str, Any]


def parts(evidence: SessionEvidence, timeline: Iterable[FireRecord], prefix: str = "") -> Parts:
    records = list(timeline)
    drills = list(evidence.drills.values())
    outcome = {d.nodeid: d.outcome for d in drills}
    shown = [d for d in drills if d.fires or d.workloads or d.link_faults]
    faults = [f for d in drills for f in d.link_faults]
    reasons = {d.nodeid: d.reason for d in drills if d.reason}
    return {
        "rows": [_fire_row(r, outcome, reasons) for r in records],
        "link_rows": [_link_row(f, outcome, reasons) for f in faults],
        "sections": [_drill_section(f"{prefix}{n}", d) for n, d in enumerate(shown)],
        "tests": sorted({r.test for r in records} | {f.test for f in faults if f.test}),
        "lost": sum(r.lost_writes or 0 for r in records),
        "burn": evidence.burn_label,
        "under_burn": sorted(evidence.under_burn.items()),
        "failed_checks": sum(1 for d in drills for v in d.verdicts if v.ok is False),
    }


def page(shares: Sequence[Parts]) -> str:
    rows = [row for share in shares for row in share["rows"]]
    link_rows = [row for share in shares for row in share.get("link_rows", ())]
    sections = [section for share in shares for section in share["sections"]]
    tests = {test for share in shares for test in share["tests"]}
    lost_total = sum(share["lost"] for share in shares)
    # A failed check with nothing lost (phantoms, a revived write, not linearizable) must not
    # read as an all-clear in the headline.
    failed = sum(share.get("failed_checks", 0) for share in shares)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-dcfire report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>pytest-dcfire report</h1>",
        f'<p class="meta">{_e(time.strftime("%Y-%m-%d %H:%M:%S %Z"))} · {len(rows)} fire(s)'
        + (f", {len(link_rows)} link fault(s)" if link_rows else "")
        + f" in {len(tests)} test(s) · "
        + (
            f'<span class="lost">{lost_total} acknowledged write(s) lost</span>'
            if lost_total
            else "no acknowledged write lost where checked"
        )
        + (f' · <span class="lost">{failed} check(s) failed</span>' if failed else "")
        + "</p>",
        "<h2>Fires</h2>",
        f"<table>{FIRES_HEAD}{''.join(rows)}</table>"
        if rows
        else '<p class="meta">No fire burned in this session.</p>',
    ]
    if link_rows:
        out += ["<h2>Link faults</h2>", f"<table>{LINKS_HEAD}{''.join(link_rows)}</table>"]
    out += _under_burn(shares)
    if sections:
        out.append("<h2>Tests</h2>")
        out += sections
    out.append("</body></html>")
    return "\n".join(out)


def _under_burn(shares: Sequence[Parts]) -> list[str]:
    """Every test that ran under the session burn, with its outcome (from every process)."""
    ran = sorted(
        {(test, outcome) for share in shares for test, outcome in share.get("under_burn", ())}
    )
    label = next((share["burn"] for share in shares if share.get("burn")), "")
    if not label:
        return []
    counts: dict[str, int] = {}
    for _, outcome in ran:
        counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no test"
    rows = "".join(
        f'<tr><td class="test" title="{_e(test)}">{_breakable(test)}</td>'
        f"<td>{_outcome_badge(outcome)}</td></tr>"
        for test, outcome in ran
    )
    return [
        f"<h2>Tests under the session burn: {_e(label)}</h2>",
        f'<p class="meta">dark for the whole session (--dcfire-burn): {_e(summary)}</p>',
        f"<table><tr><th>test</th><th>outcome</th></tr>{rows}</table>" if rows else "",
    ]


def _outcome_badge(outcome: str, reason: str = "") -> str:
    """The outcome as a badge; an xfail's reason is its tooltip (and shown in the section)."""
    if not outcome:
        return ""
    title = f' title="{_e(reason)}"' if reason else ""
    return f'<span class="badge {OUTCOME_CLASS.get(outcome, "muted")}"{title}>{_e(outcome)}</span>'


FIRES_HEAD = (
    "<tr><th>test</th><th>fire</th><th>outcome</th><th class=num>containers</th>"
    "<th class=num>cut ms</th><th class=num>skew ms</th><th class=num>restore ms</th>"
    "<th class=num>healthy ms</th><th class=num>RTO s</th><th class=num>RPO s</th>"
    "<th class=num>lost writes</th><th>via</th></tr>"
)


LINKS_HEAD = (
    "<tr><th>test</th><th>link fault</th><th>outcome</th><th>target</th><th>what</th>"
    "<th class=num>links</th><th>via</th><th class=num>set-up ms</th>"
    "<th class=num>lasted s</th></tr>"
)


def _link_row(f: LinkFault, outcome: dict[str, str], reasons: dict[str, str]) -> str:
    """The terminal's "dcfire: link faults" row of a brownout or a partition."""
    lasted = DASH if f.restored is None else f"{f.restored - f.started:.2f}"
    return (
        f'<tr><td class="test" title="{_e(f.test)}">{_breakable(_short(f.test) or DASH)}</td>'
        f'<td class="nowrap">{_e(f.kind)}</td>'
        f"<td>{_outcome_badge(outcome.get(f.test, ''), reasons.get(f.test, ''))}</td>"
        f"<td>{_e(f.target)}</td><td>{_e(f.detail or DASH)}</td>"
        f"<td class=num>{len(f.proxies)}</td><td>{_e(f.via)}</td>"
        f"<td class=num>{_num(f.setup_ms)}</td><td class=num>{lasted}</td></tr>"
    )


def _fire_row(r: FireRecord, outcome: dict[str, str], reasons: dict[str, str]) -> str:
    lost = DASH if r.lost_writes is None else str(r.lost_writes)
    lost_cell = f'<span class="lost">{lost}</span>' if r.lost_writes else lost
    errors = "".join(f'<div class="lost">{_e(e)}</div>' for e in r.errors)
    return (
        f'<tr><td class="test" title="{_e(r.test)}">{_breakable(_short(r.test))}</td>'
        f'<td class="nowrap">{_e(r.spec.describe())}{errors}</td>'
        f"<td>{_outcome_badge(outcome.get(r.test, ''), reasons.get(r.test, ''))}</td>"
        f"<td class=num>{len(r.targets)}</td><td class=num>{_num(r.cut_ms)}</td>"
        f"<td class=num>{_num(r.skew_ms, 1)}</td><td class=num>{_num(r.restore_ms)}</td>"
        f"<td class=num>{_num(r.healthy_ms)}</td><td class=num>{_num(r.rto_s, 2)}</td>"
        f"<td class=num>{_num(r.rpo_s, 2)}</td><td class=num>{lost_cell}</td>"
        f"<td>{_breakable('+'.join(dict.fromkeys(r.methods)) or DASH, '+')}</td></tr>"
    )


def _drill_section(index: str, drill: DrillEvidence) -> str:
    facts = []
    if drill.fires or not drill.link_faults:
        facts.append(f"<b>{len(drill.fires)}</b> fire(s)")
    if drill.link_faults:
        kinds = ", ".join(f"{f.kind} {f.target}" for f in drill.link_faults)
        facts.append(f"<b>{len(drill.link_faults)}</b> link fault(s) ({_e(kinds)})")
    if drill.rto_s is not None:
        facts.append(f"RTO <b>{drill.rto_s:.2f} s</b>")
    if drill.skew_ms is not None:
        facts.append(f"skew <b>{drill.skew_ms:.1f} ms</b>")
    if drill.lost_writes is not None:
        cls = ' class="lost"' if drill.lost_writes else ""
        facts.append(f"<span{cls}>lost writes <b>{drill.lost_writes}</b></span>")
    for seed in dict.fromkeys(drill.seeds):
        facts.append(f"chaos seed <b>{seed}</b>")
    for w in drill.workloads:
        facts.append(f"workload <b>{_e(w.name)}</b>: {len(w.history)} calls")
    out = [
        f'<section class="test" id="test-{index}">',
        f"<h3>{_e(drill.nodeid)} {_outcome_badge(drill.outcome, drill.reason)}</h3>",
        f'<p class="facts">{" · ".join(facts)}</p>',
    ]
    if drill.reason:
        out.append(f'<p class="reason">expected to fail: {_e(drill.reason)}</p>')
    out.append(timeline_svg(drill))
    out += [cut_svg(r) for r in drill.fires if any(s.offsets_ms for s in r.steps)]
    out.append(_verdicts(drill))
    out.append("</section>")
    return "\n".join(out)


def _verdicts(drill: DrillEvidence) -> str:
    if not drill.verdicts:
        return '<p class="meta">No checker ran on this test.</p>'
    rows = []
    for v in drill.verdicts:
        if v.ok is None:
            badge = '<span class="badge muted">measured</span>'
        elif v.ok:
            badge = '<span class="badge ok">ok</span>'
        else:
            badge = '<span class="badge bad">FAILED</span>'
        detail = (
            f"<details><summary>{_e(v.summary)}</summary><pre>{_e(v.detail)}</pre></details>"
            if v.detail
            else _e(v.summary)
        )
        rows.append(
            f"<tr><td>{_e(v.name)}</td><td>{_e(v.workload or DASH)}</td><td>{badge}</td>"
            f"<td>{detail}</td></tr>"
        )
    return (
        "<table><tr><th>checker</th><th>workload</th><th>verdict</th><th>what it found</th></tr>"
        + "".join(rows)
        + "</table>"
    )


# ---------------------------------------------------------------------------------------
# SVG
# ---------------------------------------------------------------------------------------

WIDTH = 1240
LEFT = 150
RIGHT = 24
LANE = 9  # height of one workload thread's row


def _nice_step(span: float, target: int = 10) -> float:
    raw = span / max(1, target)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _bounds(drill: DrillEvidence) -> tuple[float, float]:
    times: list[float] = []
    for b in drill.link_faults:
        times.append(b.started)
        times.append(b.restored if b.restored is not None else b.started)
    for r in drill.fires:
        times.append(r.ignited)
        times.append(r.restored if r.restored is not None else r.ignited + r.cut_ms / 1000)
    for w in drill.workloads:
        ops = w.history.ops
        if ops:
            times.append(ops[0].invoke)
            times.extend(op.complete for op in ops[-50:] if op.complete is not None)
            times.append(max(op.complete or op.invoke for op in ops))
        times.extend(m.time for m in w.history.marks)
    if not times:
        return (0.0, 1.0)
    start, end = min(times), max(times)
    if end - start < 0.05:
        end = start + 0.05
    pad = (end - start) * 0.02
    return (start - pad, end + pad)


def timeline_svg(drill: DrillEvidence) -> str:
    """The test's fires and workloads on one time axis (seconds from the first event)."""
    t0, t1 = _bounds(drill)
    origin = min([r.ignited for r in drill.fires] + [t0 + (t1 - t0) * 0.02])
    for w in drill.workloads:
        if w.history.ops:
            origin = min(origin, w.history.ops[0].invoke)
    span = t1 - t0
    plot = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * plot

    body: list[str] = []
    y = 46.0  # below the ignite / restore labels (two rows of them)
    top = y
    # fires: one row each, a band from ignition to restore
    fire_rows: list[tuple[FireRecord, float]] = []
    for r in drill.fires:
        end = r.restored if r.restored is not None else t1
        color = MODE_COLORS.get(r.spec.mode, "#e8590c")
        x0, x1 = x(r.ignited), max(x(end), x(r.ignited) + 2)
        label = f"{r.spec.describe()}"
        body.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="18" rx="3" '
            f'fill="{color}" fill-opacity="0.85"><title>{_e(label)}: ignited at '
            f"t={r.ignited - origin:.3f} s, restored at "
            f"{DASH if r.restored is None else f't={r.restored - origin:.3f} s'}</title></rect>"
        )
        text_x = x0 + 6 if x1 - x0 > 7 * len(label) else x1 + 6
        fill = "#fff" if x1 - x0 > 7 * len(label) else "#212529"
        body.append(
            f'<text x="{text_x:.1f}" y="{y + 13}" font-size="12" font-weight="600" '
            f'fill="{fill}">{_e(label)}</text>'
        )
        fire_rows.append((r, y))
        y += 24
    link_rows: list[LinkFault] = []
    for b in drill.link_faults:  # brownouts and partitions: a band each, like a fire's
        end = b.restored if b.restored is not None else t1
        x0, x1 = x(b.started), max(x(end), x(b.started) + 2)
        label = f"{b.kind} {b.target}" + (f" ({b.detail})" if b.detail else "")
        color = LINK_COLORS.get(b.kind, "#868e96")
        inside = x1 - x0 > 7 * len(label)
        body.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="18" rx="3" '
            f'fill="{color}" fill-opacity="0.6"><title>{_e(label)}: from '
            f"t={b.started - origin:.3f} s, lifted at "
            f"{DASH if b.restored is None else f't={b.restored - origin:.3f} s'}</title></rect>"
            f'<text x="{(x0 + 6 if inside else x1 + 6):.1f}" y="{y + 13}" font-size="12" '
            f'fill="#212529">{_e(label)}</text>'
        )
        link_rows.append(b)
        y += 24
    if drill.fires:
        body.insert(0, f'<text x="8" y="{top + 13}" font-size="12" fill="#495057">fires</text>')
    if drill.link_faults:
        link_top = top + 24 * len(drill.fires)
        body.insert(
            0, f'<text x="8" y="{link_top + 13}" font-size="12" fill="#495057">link faults</text>'
        )
    y += 6

    # workloads: a row per thread, a segment per call
    rto_marks: list[tuple[float, float, str]] = []
    for w in drill.workloads:
        y = _workload_rows(body, w, x, y, t1)
        av = w.availability
        if av is not None and av.rto is not None and av.ignited is not None:
            assert av.recovered_at is not None
            rto_marks.append((av.ignited, av.recovered_at, w.name))
    bottom = y + 4

    # background bands and vertical marks across the whole plot
    under: list[str] = []
    over: list[str] = []
    labels: list[tuple[float, int]] = []

    def label_row(xv: float) -> int:
        """The first row of mark labels with no label within 60 px (else the lower row)."""
        for row in (0, 1):
            if all(abs(xv - other) > 60 for other, r in labels if r == row):
                labels.append((xv, row))
                return row
        labels.append((xv, 1))
        return 1

    for r, _row_y in fire_rows:
        end = r.restored if r.restored is not None else t1
        color = MODE_COLORS.get(r.spec.mode, "#e8590c")
        under.append(
            f'<rect x="{x(r.ignited):.1f}" y="{top}" width="{max(1.0, x(end) - x(r.ignited)):.1f}" '
            f'height="{bottom - top}" fill="{color}" fill-opacity="0.07"/>'
        )
        xi = x(r.ignited)
        over.append(_vline(xi, top, bottom, "#c92a2a", "ignite", label_row(xi)))
        if r.restored is not None:
            xr = x(r.restored)
            over.append(_vline(xr, top, bottom, "#2b8a3e", "restore", label_row(xr)))
    for b in link_rows:
        end = b.restored if b.restored is not None else t1
        color = LINK_COLORS.get(b.kind, "#868e96")
        under.append(
            f'<rect x="{x(b.started):.1f}" y="{top}" '
            f'width="{max(1.0, x(end) - x(b.started)):.1f}" height="{bottom - top}" '
            f'fill="{color}" fill-opacity="0.07"/>'
        )
        xs = x(b.started)
        over.append(_vline(xs, top, bottom, color, b.kind, label_row(xs)))
        if b.restored is not None:
            xl = x(b.restored)
            over.append(_vline(xl, top, bottom, "#2b8a3e", "lifted", label_row(xl)))
    for n, (ignited, recovered, name) in enumerate(rto_marks):
        yy = bottom + 30 + 18 * n  # below the axis labels
        x0, x1 = x(ignited), x(recovered)
        over.append(
            f'<line x1="{x1:.1f}" y1="{top}" x2="{x1:.1f}" y2="{yy}" stroke="#1971c2" '
            f'stroke-width="2"/>'
            f'<line x1="{x0:.1f}" y1="{yy}" x2="{x1:.1f}" y2="{yy}" stroke="#1971c2" '
            f'stroke-width="2" marker-end="url(#arrow)"/>'
            f'<text x="{x1 + 6:.1f}" y="{yy + 4}" font-size="12" font-weight="700" '
            f'fill="#1971c2">RTO {recovered - ignited:.2f} s'
            + (f" ({_e(name)})" if len(rto_marks) > 1 else "")
            + "</text>"
        )
    height = bottom + 30 + 18 * len(rto_marks) + 34

    axis = _axis(t0, t1, origin, x, top, bottom)
    legend = _legend(height - 16, drill)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of {_e(drill.nodeid)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#1971c2"/></marker>'
        "</defs>" + "".join(under) + axis + "".join(body) + "".join(over) + legend + "</svg>"
    )


def _vline(xv: float, top: float, bottom: float, color: str, label: str, row: int = 0) -> str:
    ly = top - 8 - 13 * row
    return (
        f'<line x1="{xv:.1f}" y1="{ly + 3}" x2="{xv:.1f}" y2="{bottom}" stroke="{color}" '
        f'stroke-width="1.5" stroke-dasharray="5,3"/>'
        f'<text x="{xv:.1f}" y="{ly}" font-size="11" fill="{color}" '
        f'text-anchor="middle" font-weight="600">{label}</text>'
    )


def _axis(t0: float, t1: float, origin: float, x: Any, top: float, bottom: float) -> str:
    step = _nice_step(t1 - t0)
    out = [f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#adb5bd"/>']
    first = math.ceil((t0 - origin) / step) * step
    value = first
    while origin + value <= t1:
        xv = x(origin + value)
        out.append(
            f'<line x1="{xv:.1f}" y1="{top}" x2="{xv:.1f}" y2="{bottom}" stroke="#f1f3f5"/>'
            f'<text x="{xv:.1f}" y="{bottom + 14}" font-size="11" fill="#868e96" '
            f'text-anchor="middle">{value:g} s</text>'
        )
        value = round(value + step, 9)
    return "".join(out)


def _legend(y: float, drill: DrillEvidence) -> str:
    """What this timeline draws, and only that."""
    items: list[tuple[str, str, str]] = []
    for mode in dict.fromkeys(r.spec.mode for r in drill.fires):
        items.append((f"{mode}", MODE_COLORS.get(mode, "#e8590c"), "rect"))
    for kind in dict.fromkeys(f.kind for f in drill.link_faults):
        items.append((kind, LINK_COLORS.get(kind, "#868e96"), "rect"))
    if drill.workloads:
        items += [
            ("ok", COLORS["ok"], "rect"),
            ("fail (not done)", COLORS["fail"], "rect"),
            ("info (indeterminate)", COLORS["info"], "rect"),
        ]
    if any(w.lost is not None and w.lost.lost for w in drill.workloads):
        items.append(("lost write", "#c92a2a", "cross"))
    if any(w.lost is not None and w.lost.maybe_lost for w in drill.workloads):
        items.append(("maybe lost (info)", COLORS["info"], "circle"))
    if any(w.availability is not None and w.availability.rto is not None for w in drill.workloads):
        items.append(("RTO", "#1971c2", "rect"))
    out = []
    xv = float(LEFT)
    for label, color, shape in items:
        if shape == "cross":
            out.append(_cross(xv + 5, y - 4, color))
        elif shape == "circle":
            out.append(
                f'<circle cx="{xv + 5}" cy="{y - 4}" r="3.5" fill="none" stroke="{color}" '
                'stroke-width="1.5"/>'
            )
        else:
            out.append(f'<rect x="{xv}" y="{y - 8}" width="12" height="8" fill="{color}"/>')
        out.append(f'<text x="{xv + 18}" y="{y}" font-size="12" fill="#495057">{label}</text>')
        xv += 30 + 7.2 * len(label)
    return "".join(out)


def _cross(xv: float, yv: float, color: str, size: float = 4.0) -> str:
    return (
        f'<path d="M{xv - size:.1f},{yv - size:.1f} L{xv + size:.1f},{yv + size:.1f} '
        f'M{xv - size:.1f},{yv + size:.1f} L{xv + size:.1f},{yv - size:.1f}" '
        f'stroke="{color}" stroke-width="2"/>'
    )


def _workload_rows(body: list[str], w: WorkloadRecord, x: Any, y: float, t1: float) -> float:
    """One row per thread; consecutive calls of one outcome that touch on screen are merged,
    so the SVG stays small whatever the number of calls."""
    ops = w.history.ops
    processes = sorted({op.process for op in ops}, key=lambda p: (str(type(p)), p))
    body.append(
        f'<text x="8" y="{y + 10}" font-size="12" fill="#212529" font-weight="600">'
        f"{_e(w.name)}</text>"
        f'<text x="8" y="{y + 24}" font-size="11" fill="#868e96">{len(ops)} calls, '
        f"{len(processes)} threads</text>"
    )
    rows_top = y
    for row, process in enumerate(processes):
        yy = y + row * LANE + LANE / 2
        segments: list[list[Any]] = []  # [x0, x1, type, count]
        for op in (o for o in ops if o.process == process):
            end = op.complete if op.complete is not None else t1
            x0, x1 = x(op.invoke), max(x(end), x(op.invoke) + 1.2)
            last = segments[-1] if segments else None
            if last is not None and last[2] == op.type and x0 <= last[1] + 0.8:
                last[1] = max(last[1], x1)
                last[3] += 1
            else:
                segments.append([x0, x1, op.type, 1])
        for x0, x1, kind, count in segments:
            body.append(
                f'<line x1="{x0:.1f}" y1="{yy:.1f}" x2="{x1:.1f}" y2="{yy:.1f}" '
                f'stroke="{COLORS[kind]}" stroke-width="{LANE - 3}"><title>{count} {kind}'
                "</title></line>"
            )
    y = rows_top + max(len(processes), 3) * LANE + 6
    lost = w.lost
    if lost is not None and (lost.lost or lost.maybe_lost):
        color = "#c92a2a" if lost.lost else "#868e96"
        maybe = f", {len(lost.maybe_lost)} maybe" if lost.maybe_lost else ""
        body.append(
            f'<text x="8" y="{y + 11}" font-size="12" fill="{color}" font-weight="600">'
            f"lost writes ({len(lost.lost)})</text>"
            f'<text x="8" y="{y + 24}" font-size="11" fill="#868e96">'
            f"{len(lost.lost)} acknowledged{maybe}</text>"
        )
        # One symbol per 3 px: thousands of lost writes stay a readable (and small) lane.
        for kind, ops in (("maybe", lost.maybe_lost), ("lost", lost.lost)):
            by_px: dict[int, list[Any]] = {}
            for op in ops:
                by_px.setdefault(int(x(op.invoke) / 3), []).append(op.value)
            for px, values in by_px.items():
                xv = px * 3 + 1.5
                shown = ", ".join(_e(v) for v in values[:5]) + (" ..." if len(values) > 5 else "")
                if kind == "maybe":
                    body.append(
                        f'<circle cx="{xv:.1f}" cy="{y + 7}" r="3.5" fill="none" '
                        f'stroke="{COLORS["info"]}" stroke-width="1.5"><title>maybe lost '
                        f"(indeterminate): {shown}</title></circle>"
                    )
                else:
                    body.append(
                        f"<g>{_cross(xv, y + 7, '#c92a2a')}<title>lost (acknowledged): "
                        f"{shown}</title></g>"
                    )
        y += 30
    return y + 8


def cut_svg(r: FireRecord) -> str:
    """When each container's cut took effect, ms after the ignition (steps run one after the
    other, so a step's offsets start where the previous step ended)."""
    names = list(dict.fromkeys(n for s in r.steps for n in s.offsets_ms))
    if not names:
        return ""
    row_h = 16
    # The name column fits the longest name (about 6.5 px a character at 11 px), so an
    # adopted container's long name is not cut off at the left edge.
    left = max(200, int(16 + 6.5 * max(len(n) for n in names)))
    width = left + 560
    shapes = {"network": "circle", "pause": "circle", "links": "diamond", "storage": "square"}
    colors = {
        "network": "#c92a2a",
        "pause": "#1c7ed6",
        "links": "#7048e8",
        "storage": "#495057",
        "kill": "#000",
    }
    starts: list[float] = []
    at = 0.0
    for s in r.steps:
        starts.append(at)
        at += s.latency_ms
    total = max(at, r.cut_ms, 1.0)
    plot = width - left - 60

    def x(ms: float) -> float:
        return left + ms / total * plot

    height = 36 + row_h * len(names) + 36
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="8" y="16" font-size="12" font-weight="600" fill="#212529">'
        f"{_e(r.spec.describe())}: cut of each container, ms after ignition "
        f"(skew {r.skew_ms:.1f} ms, all cut in {r.cut_ms:.0f} ms)</text>",
    ]
    for i, name in enumerate(names):
        yy = 36 + i * row_h
        out.append(
            f'<text x="{left - 8}" y="{yy + 4}" font-size="11" fill="#495057" '
            f'text-anchor="end">{_e(name)}</text>'
            f'<line x1="{left}" y1="{yy}" x2="{left + plot}" y2="{yy}" stroke="#f1f3f5"/>'
        )
        for s, start in zip(r.steps, starts, strict=True):
            if name not in s.offsets_ms:
                continue
            xv, color = x(start + s.offsets_ms[name]), colors.get(s.effect, "#000")
            tip = f"<title>{_e(name)}: {s.effect} at {start + s.offsets_ms[name]:.1f} ms</title>"
            shape = shapes.get(s.effect, "circle")
            if shape == "circle":
                out.append(f'<circle cx="{xv:.1f}" cy="{yy}" r="4" fill="{color}">{tip}</circle>')
            elif shape == "square":
                out.append(
                    f'<rect x="{xv - 3.5:.1f}" y="{yy - 3.5}" width="7" height="7" '
                    f'fill="{color}">{tip}</rect>'
                )
            else:
                out.append(
                    f'<path d="M{xv:.1f},{yy - 5} L{xv + 5:.1f},{yy} L{xv:.1f},{yy + 5} '
                    f'L{xv - 5:.1f},{yy} z" fill="{color}">{tip}</path>'
                )
    axis_y = 36 + row_h * len(names) - 6
    step = _nice_step(total, 6)
    value = 0.0
    while value <= total + 1e-9:
        out.append(
            f'<text x="{x(value):.1f}" y="{axis_y + 14}" font-size="10" fill="#868e96" '
            f'text-anchor="middle">{value:g} ms</text>'
        )
        value = round(value + step, 9)
    lx = float(left)
    for effect in dict.fromkeys(s.effect for s in r.steps):
        out.append(
            f'<circle cx="{lx}" cy="{axis_y + 24}" r="4" fill="{colors.get(effect, "#000")}"/>'
            f'<text x="{lx + 8}" y="{axis_y + 28}" font-size="11" fill="#495057">{effect}</text>'
        )
        lx += 20 + 7 * len(effect)
    out.append("</svg>")
    return "".join(out)
