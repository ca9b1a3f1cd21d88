"""Transactional isolation, the way Elle checks it: list-append transactions, dependency
cycles, named anomalies, each explained in words.

A transaction (`f == "txn"`) is a list of micro-operations: `("append", key, value)` adds a
value to the end of the key's list, `("r", key, None)` reads the list (completed as
`("r", key, (1, 2))`). Because appends only add to the end, the longest read of a key shows
the order of every version before it: each read is a prefix of it (or the history is
broken), the writer of each element follows the writer of the one before (ww), a read that
ends at an element depends on its writer (wr), and the writer of the next element depends
on the read not having seen it (rw). Cycles in that graph are the anomalies of Adya's
levels (G0: ww only; G1c: ww and wr; G-single: exactly one rw; G2-item: more than one),
beside those a single read shows (G1a: a read of an aborted append; G1b: a read that stops
inside another transaction's appends). All of it is a pass over the history plus Tarjan's
strongly connected components; only components with a cycle are searched (breadth-first)
for the smallest cycle of each kind.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_dcfire.history.model import BaseHistory, HistoryError, Op, Value, hashable

#: The anomalies each level forbids (cycles and single reads; `incompatible-order` and
#: `internal` mean the history itself is inconsistent: every level forbids them).
LEVELS: dict[str, tuple[str, ...]] = {
    "read-committed": ("G0", "G1a", "G1b", "G1c"),
    "repeatable-read": ("G0", "G1a", "G1b", "G1c", "G-single", "G2-item"),
    "snapshot-isolation": ("G0", "G1a", "G1b", "G1c", "G-single"),
    "serializable": ("G0", "G1a", "G1b", "G1c", "G-single", "G2-item"),
}
ALWAYS = ("incompatible-order", "internal", "duplicate-append", "garbage-read")
#: Appends to a key that no read saw get edges only when there are at most this many.
UNSEEN_LIMIT = 8
#: Start points tried per component when looking for the smallest cycle of a kind.
SEARCH_LIMIT = 64

APPEND = "append"
READ = "r"


class IsolationError(HistoryError):
    """A history the isolation checker cannot interpret."""


@dataclass(frozen=True)
class Edge:
    """`source` must come before `target`: why (`kind` ww, wr or rw) and on which key."""

    source: int
    target: int
    kind: str
    key: Value
    value: Value  # the element that makes the dependency
    read: Value = None  # the list read (wr, rw), or the element before `value` (ww)


@dataclass(frozen=True)
class Anomaly:
    """One anomaly: its `name`, the transactions involved, the cycle (for G0, G1c,
    G-single, G2-item: edges whose targets lead back to the first source) and an
    `explanation` a person can follow."""

    name: str
    ops: tuple[Op, ...]
    cycle: tuple[Edge, ...] = ()
    explanation: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.explanation}"


@dataclass(frozen=True)
class Isolation:
    """The result of `check_isolation`: `ok` when none of the anomalies `level` forbids
    was found; `anomalies` lists those that were (see `Anomaly`)."""

    level: str
    anomalies: tuple[Anomaly, ...]
    transactions: int
    committed: int
    edges: int
    also: tuple[Anomaly, ...] = field(default=())  # found, but allowed at this level

    @property
    def ok(self) -> bool:
        return not self.anomalies

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted({a.name for a in self.anomalies}))

    def __str__(self) -> str:
        head = (
            f"{self.level}: {self.transactions} transactions ({self.committed} committed), "
            f"{self.edges} dependencies"
        )
        if self.ok:
            allowed = f"; allowed here: {', '.join(sorted({a.name for a in self.also}))}"
            return head + ": no anomaly" + (allowed if self.also else "")
        lines = [head + f": {len(self.anomalies)} anomalies ({', '.join(self.names)})"]
        for anomaly in self.anomalies[:10]:
            lines.append(f"  {anomaly.name}: " + anomaly.explanation.replace("\n", "\n    "))
        if len(self.anomalies) > 10:
            lines.append(f"  and {len(self.anomalies) - 10} more")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Reading transactions
# ---------------------------------------------------------------------------------------


def _micro_ops(op: Op, micro: Value, where: str) -> list[tuple[str, Any, Value]]:
    valid = 'valid: ("append", key, value) and ("r", key, list-or-None)'
    if not isinstance(micro, tuple):
        raise IsolationError(
            f"operation #{op.id} (txn): its {where} must be a list of micro-operations, "
            f"got {micro!r}; {valid}"
        )
    out = []
    for m in micro:
        if not (isinstance(m, tuple) and len(m) == 3 and m[0] in (APPEND, READ)):
            raise IsolationError(
                f"operation #{op.id} (txn): cannot interpret micro-operation {m!r}; {valid}"
            )
        f, key, value = m
        if f == READ and not (value is None or isinstance(value, tuple)):
            raise IsolationError(
                f"operation #{op.id} (txn): read of key {key!r} returned {value!r}, not a "
                f"list; {valid}"
            )
        out.append((str(f), hashable(key), hashable(value)))
    return out


def _in_order(mine: Sequence[Any], seen: Sequence[Any]) -> bool:
    """Whether `mine` appears in `seen` in order (others may come between)."""
    rest = iter(seen)
    return all(any(v == w for w in rest) for v in mine)


def _name(op: Op) -> str:
    return f"T{op.id}"


def _show(values: Value) -> str:
    if isinstance(values, tuple):
        return "[" + " ".join(repr(v) for v in values) + "]"
    return repr(values)


def _explain_edge(edge: Edge, ops: Sequence[Op]) -> str:
    a, b = _name(ops[edge.source]), _name(ops[edge.target])
    k, v = edge.key, edge.value
    if edge.kind == "ww":
        return (
            f"{a} appended {edge.read!r} to key {k!r}, and {b} appended {v!r} right after it (ww)"
        )
    if edge.kind == "wr":
        return (
            f"{b} read key {k!r} = {_show(edge.read)}, which ends with {a}'s append of {v!r} (wr)"
        )
    return (
        f"{a} read key {k!r} = {_show(edge.read)} and did not see {b}'s append of {v!r}, "
        "the next element (rw)"
    )


def _classify(cycle: Sequence[Edge]) -> str:
    rw = sum(1 for e in cycle if e.kind == "rw")
    if rw == 1:
        return "G-single"
    if rw > 1:
        return "G2-item"
    return "G1c" if any(e.kind == "wr" for e in cycle) else "G0"


def _cycle_anomaly(cycle: Sequence[Edge], ops: Sequence[Op]) -> Anomaly:
    name = _classify(cycle)
    steps = [f"{i}. {_explain_edge(e, ops)}" for i, e in enumerate(cycle, 1)]
    names = [_name(ops[e.source]) for e in cycle] + [_name(ops[cycle[0].source])]
    summary = (
        f"{' -> '.join(names)}: each must come before the next, so {names[0]} comes before "
        "itself; no serial order explains what they saw"
    )
    return Anomaly(
        name,
        tuple(ops[e.source] for e in cycle),
        tuple(cycle),
        "\n".join([*steps, summary]),
    )


# ---------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------


def check_isolation(history: BaseHistory | Iterable[Op], level: str = "serializable") -> Isolation:
    """Check the list-append transactions of `history` against `level` (one of LEVELS)."""
    if level not in LEVELS:
        raise IsolationError(f"unknown isolation level {level!r}; valid: {', '.join(LEVELS)}")
    # Millions of small tuples and no reference cycles: the cyclic collector would only
    # rescan them again and again (measured: most of the time at 100k transactions).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _check(history, level)
    finally:
        if collecting:
            gc.enable()


def _check(history: BaseHistory | Iterable[Op], level: str) -> Isolation:
    hist = history if isinstance(history, BaseHistory) else BaseHistory(history)
    txns: list[Op] = []
    micro: list[list[tuple[str, Any, Value]]] = []
    for op in hist.ops:
        if op.f != "txn":
            raise IsolationError(
                f"operation #{op.id} is {op.f!r}: the isolation checker reads list-append "
                "transactions only (f 'txn', value a list of ('append', key, value) and "
                "('r', key, None) micro-operations)"
            )
        done = op.result if op.type == "ok" else op.value
        if op.type == "ok" and done is None:
            done = op.value
        micro.append(_micro_ops(op, done, "result" if op.type == "ok" else "value"))
        txns.append(op)
    found: list[Anomaly] = []

    # Who appended what (appends must be unique per key: that is what makes them traceable).
    writer: dict[tuple[Any, Any], int] = {}
    appends_of: dict[tuple[int, Any], list[Any]] = {}  # (txn, key) -> its values, in order
    for t, ms in enumerate(micro):
        for f, key, value in ms:
            if f != APPEND:
                continue
            if (key, value) in writer:
                other = writer[(key, value)]
                found.append(
                    Anomaly(
                        "duplicate-append",
                        (txns[other], txns[t]),
                        explanation=f"{_name(txns[other])} and {_name(txns[t])} both "
                        f"appended {value!r} to key {key!r}: appends must be unique per key",
                    )
                )
                continue
            writer[(key, value)] = t
            appends_of.setdefault((t, key), []).append(value)

    # External reads (before the transaction's own appends to the key) of committed ones.
    reads: list[tuple[int, Any, tuple[Any, ...]]] = []
    orders: list[tuple[int, Any, tuple[Any, ...]]] = []  # every committed read
    for t, ms in enumerate(micro):
        if txns[t].type != "ok":
            continue
        own: dict[Any, list[Any]] = {}
        for f, key, value in ms:
            if f == APPEND:
                own.setdefault(key, []).append(value)
                continue
            seen = value if isinstance(value, tuple) else ()
            orders.append((t, key, seen))
            mine = own.get(key)
            if not mine:
                reads.append((t, key, seen))
                continue
            if not _in_order(mine, seen):
                found.append(
                    Anomaly(
                        "internal",
                        (txns[t],),
                        explanation=f"{_name(txns[t])} appended {_show(tuple(mine))} to key "
                        f"{key!r}, then read {_show(seen)}: a transaction must see its own "
                        "appends, in order",
                    )
                )
            # (A read after the transaction's own appends says nothing about the order of
            # others: it is not used for dependencies.)

    # The version order of each key: its longest read; every read must be a prefix of it.
    longest: dict[Any, tuple[Any, ...]] = {}
    for _, key, seen in orders:
        if key not in longest or len(seen) > len(longest[key]):
            longest[key] = seen
    odd: set[Any] = set()  # keys with a read that is no prefix of the longest
    for t, key, seen in orders:
        order = longest[key]  # (there is one: this read)
        if order[: len(seen)] != seen:
            odd.add(key)
            found.append(
                Anomaly(
                    "incompatible-order",
                    (txns[t],),
                    explanation=f"{_name(txns[t])} read key {key!r} = {_show(seen)}, which is "
                    f"not a prefix of the longest read {_show(order)}: the two cannot both be "
                    "states of one list",
                )
            )
    # Single reads: garbage, aborted (G1a) and intermediate (G1b) values.
    # (Elements are looked up once per key, in its longest read; a read needs a closer
    # look only if it is no prefix of that, or if that holds a bad element.)
    suspect = {
        key
        for key, order in longest.items()
        if any(
            txns[w].type == "fail" if (w := writer.get((key, v))) is not None else True
            for v in order
        )
    }
    for t, key, seen in orders:
        if key not in suspect and key not in odd:
            values: tuple[Any, ...] = ()
        else:
            values = seen
        for value in values:
            w = writer.get((key, value))
            if w is None:
                found.append(
                    Anomaly(
                        "garbage-read",
                        (txns[t],),
                        explanation=f"{_name(txns[t])} read {value!r} in key {key!r}, which "
                        "no transaction appended",
                    )
                )
            elif txns[w].type == "fail":
                found.append(
                    Anomaly(
                        "G1a",
                        (txns[w], txns[t]),
                        explanation=f"{_name(txns[t])} read key {key!r} = {_show(seen)}, "
                        f"including {value!r}, appended by {_name(txns[w])}, which aborted",
                    )
                )
        if seen:
            w = writer.get((key, seen[-1]))
            if w is not None and w != t:
                mine = appends_of[(w, key)]
                if mine[-1] != seen[-1]:
                    found.append(
                        Anomaly(
                            "G1b",
                            (txns[w], txns[t]),
                            explanation=f"{_name(txns[t])} read key {key!r} = {_show(seen)}, "
                            f"ending with {seen[-1]!r}, but {_name(txns[w])} went on to "
                            f"append {_show(tuple(mine[mine.index(seen[-1]) + 1 :]))}: "
                            "it saw the middle of another transaction",
                        )
                    )

    # The dependency graph, between transactions that did (or may have) commit.
    out: dict[int, list[Edge]] = {}
    count = 0

    def add(edge: Edge) -> None:
        nonlocal count
        if edge.source != edge.target:
            out.setdefault(edge.source, []).append(edge)
            count += 1

    # Committed appends that no read saw come after the longest read (lists only grow at
    # the end): after its last writer (ww), and after every read of all of it (rw). Their
    # own order is unknown, so only a few of them get edges (a sound, bounded subset).
    unseen: dict[Any, list[tuple[int, Any]]] = {}
    observed = {(key, value) for key, order in longest.items() for value in order}
    for (t, key), appended in appends_of.items():
        if txns[t].type == "ok":
            for value in appended:
                if (key, value) not in observed:
                    unseen.setdefault(key, []).append((t, value))
    for key, later in unseen.items():
        if len(later) > UNSEEN_LIMIT:
            continue
        order = longest.get(key, ())
        last = writer.get((key, order[-1])) if order else None
        for u, value in later:
            if last is not None:
                add(Edge(last, u, "ww", key, value, order[-1]))
    for key, order in longest.items():
        previous: int | None = None
        before: Any = None
        for value in order:
            w = writer.get((key, value))
            if w is None:
                continue
            if previous is not None and previous != w:
                add(Edge(previous, w, "ww", key, value, before))
            previous, before = w, value
    for t, key, seen in reads:
        order = longest[key]
        if seen:
            w = writer.get((key, seen[-1]))
            if w is not None and txns[w].type != "fail":
                add(Edge(w, t, "wr", key, seen[-1], seen))
        if len(seen) < len(order) and order[: len(seen)] == seen:
            nxt = writer.get((key, order[len(seen)]))
            if nxt is not None:
                add(Edge(t, nxt, "rw", key, order[len(seen)], seen))
        elif seen == order and len(unseen.get(key, ())) <= UNSEEN_LIMIT:
            for u, value in unseen.get(key, ()):
                add(Edge(t, u, "rw", key, value, seen))

    forbidden = set(LEVELS[level]) | set(ALWAYS)
    cycles = _cycles(out, len(txns), forbidden | {"G0", "G1c", "G-single", "G2-item"})
    found.extend(_cycle_anomaly(c, txns) for c in cycles)
    return Isolation(
        level=level,
        anomalies=tuple(a for a in found if a.name in forbidden),
        transactions=len(txns),
        committed=sum(1 for op in txns if op.type == "ok"),
        edges=count,
        also=tuple(a for a in found if a.name not in forbidden),
    )


# ---------------------------------------------------------------------------------------
# Cycles
# ---------------------------------------------------------------------------------------


def _components(out: dict[int, list[Edge]], n: int) -> list[list[int]]:
    """Tarjan's strongly connected components with more than one node (iterative)."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for root in out:
        if index[root] != -1:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            edges = out.get(v, ())
            recurse = False
            while i < len(edges):
                w = edges[i].target
                i += 1
                if index[w] == -1:
                    work.append((v, i))
                    work.append((w, 0))
                    recurse = True
                    break
                if on_stack[w]:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def _path(
    out: dict[int, list[Edge]], start: int, goal: int, members: set[int], kinds: frozenset[str]
) -> list[Edge] | None:
    """The shortest path from `start` to `goal` inside `members` over edges of `kinds`."""
    if start == goal:
        return []
    came: dict[int, Edge] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        v = queue.popleft()
        for edge in out.get(v, ()):
            w = edge.target
            if w in seen or w not in members or edge.kind not in kinds:
                continue
            seen.add(w)
            came[w] = edge
            if w == goal:
                path = [edge]
                while path[-1].source != start:
                    path.append(came[path[-1].source])
                return path[::-1]
            queue.append(w)
    return None


def _cycles(out: dict[int, list[Edge]], n: int, wanted: set[str]) -> list[list[Edge]]:
    """For each component with a cycle, the smallest cycle found of each kind: through a
    ww edge over ww only (G0), through a wr edge over ww and wr (G1c), through an rw edge
    back over ww and wr (G-single) or over anything (G2-item, if it has more rw edges)."""
    results: list[list[Edge]] = []
    ww = frozenset({"ww"})
    wwr = frozenset({"ww", "wr"})
    every = frozenset({"ww", "wr", "rw"})
    searches = (
        ("G0", "ww", ww),
        ("G1c", "wr", wwr),
        ("G-single", "rw", wwr),
        ("G2-item", "rw", every),
    )
    for component in _components(out, n):
        members = set(component)
        inside = [e for v in component for e in out.get(v, ()) if e.target in members]
        best: dict[str, list[Edge]] = {}
        for name, first, kinds in searches:
            if name not in wanted:
                continue
            tried = 0
            for edge in inside:
                if edge.kind != first:
                    continue
                tried += 1
                if tried > SEARCH_LIMIT:
                    break
                back = _path(out, edge.target, edge.source, members, kinds)
                if back is None:
                    continue
                cycle = [edge, *back]
                kind = _classify(cycle)
                if kind == name and (name not in best or len(cycle) < len(best[name])):
                    best[name] = cycle
                    if len(cycle) == 2:
                        break
        results.extend(best.values())
    return results
