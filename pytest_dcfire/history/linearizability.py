"""Linearizability checking: Wing & Gong's search with Lowe's memo of (linearized set, state).

When a history is not linearizable, a bare "no" helps nobody: the result names the operation
that could not be placed, the longest linearizable prefix, and a small set of operations
that contradict each other on their own (found by shrinking a window that starts from an
unknown state), with their times.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_dcfire.history.model import READ_FS, BaseHistory, Op, Value, hashable
from pytest_dcfire.history.models import ANY, Effect, Model, State, Step, resolve
from pytest_dcfire.history.schedule import Attempt, Exhausted, Way, decide

#: Windows at most this long are shrunk operation by operation to a minimal conflicting set.
SHRINK_LIMIT = 64
#: Explaining a violation gets at least this many seconds, or this many times the verdict's.
EXPLAIN_SECONDS = 0.5
EXPLAIN_FACTOR = 3.0
#: The budget is looked at every this many search steps.
_CHECK_EVERY = 256


class _OutOfBudget(Exception):
    pass


@dataclass
class _Budget:
    deadline: float | None
    max_states: int | None
    explored: int = 0
    reason: str = ""

    def spend(self, states: int) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = "ran out of time"
            raise _OutOfBudget()
        if self.max_states is not None and self.explored + states > self.max_states:
            self.reason = f"explored more than {self.max_states} states"
            raise _OutOfBudget()


@dataclass(slots=True)
class _Item:
    """An operation as the search sees it: its interval (ret None: never returns) and step."""

    op: Op
    call: float
    ret: float | None
    step: Step
    optional: bool = False  # it may also not happen at all (info, or running at a window start)
    effect: Effect = "updates"  # see Model.effect
    sensitive: tuple[State, ...] | None = None  # see Model.sensitive
    reaches: Callable[[State], bool] | None = None  # an ok read: see `_reaching`
    resets: tuple[State, ...] = ()  # see `_reaching`
    commutes: bool = False  # see `Counter.commutes`


@dataclass
class _Run:
    valid: bool
    best: int = 0  # position (1-based, in event order) of the furthest return reached
    culprit: int | None = None  # index of the item whose return could not be passed
    exact: bool = True  # False: `best` is a bound (no linearization passes it), maybe not the first
    order: list[tuple[int, State]] = field(default_factory=list)  # a linearization


def _events(items: Sequence[_Item]) -> list[tuple[float, int, int]]:
    """Calls and returns in time order; at equal times calls go first (they overlap)."""
    events = [(item.call, 0, i) for i, item in enumerate(items)]
    events.extend((item.ret, 1, i) for i, item in enumerate(items) if item.ret is not None)
    events.sort()
    return events


#: A key's second search order joins its race after the first explored this many states
#: (plus 4 a operation): most keys are decided by the first alone.
STAGGER = 2_000
#: How many events ahead the search looks for a read that it already overshot.
LOOKAHEAD = 64
#: Branch orders each key's searches race with (see `_searching`).
ORDERINGS = ("deadline", "invocation")


def _search(
    items: Sequence[_Item],
    init: State,
    budget: _Budget,
    ordering: str = "deadline",
    prune: bool = True,
) -> _Run:
    """`_searching` run to its end."""
    steps = _searching(items, init, budget, ordering, prune)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        run: _Run = stop.value
        return run


def _searching(
    items: Sequence[_Item],
    init: State,
    budget: _Budget,
    ordering: str = "deadline",
    prune: bool = True,
) -> Generator[int, None, _Run]:
    """Depth-first search over linearization orders (Wing & Gong), never visiting a node
    twice (Lowe's memo of linearized set and state). Raises _OutOfBudget.

    Reductions that keep it small, each because some linearization that works (if any does)
    has the shape the search keeps to:
    - an operation that only observes the state (a read), possible now, goes now, with no
      alternative tried (moving it first keeps any linearization valid);
    - an optional (info) operation goes only right before another operation that sees its
      effect (see `_Watchers.consumed`); info operations that do the same thing are used in
      invocation order; blind info writes are kept off the event list and looked up by the
      state they write, so thousands of them cost little;
    - a node is skipped when a visited one had the same non-info operations linearized, the
      same state, and a subset of its info operations (it could do all this one can);
    - info operations that commute with everything but reads (a counter's adds) wait
      beside the list and go only as a run right before a read that needs them, which of
      them left open (see `pool_groups`);
    - with `prune`, a node is dropped when a pending read can no longer get its value (see
      `_reaching`), or, for such counters, a read a little way ahead (see `overshot`); the
      failure it reports is then a bound (`_Run.exact`).
    Branches are tried in `ordering`: "invocation" order, or earliest "deadline" (return)
    first. Every few hundred steps it yields the nodes pushed so far, so that several
    searches can share one process (see `schedule`).
    """
    events = _events(items)
    size = len(events)
    tail = size + 1
    count = len(items)
    # Entries 1..size are the events; 0 is the head of the doubly linked list, tail the end.
    nxt = [*range(1, size + 2), tail]
    prv = [0, *range(0, size + 1)]
    is_call = [False] * (size + 2)
    op_of = [-1] * (size + 2)
    ret_of = [0] * count
    call_of = [0] * count
    for entry, (_, kind, i) in enumerate(events, 1):
        op_of[entry] = i
        if kind == 0:
            is_call[entry] = True
            call_of[i] = entry
        else:
            ret_of[i] = entry
    steps = [item.step for item in items]
    deadline = [r if r else tail + i for i, r in enumerate(ret_of)]
    due = [0] * (size + 2)  # the deadline of each call entry's operation, for sorting
    for entry in range(1, size + 1):
        if is_call[entry]:
            due[entry] = deadline[op_of[entry]]
    # Operations that never return (info) are numbered apart from the others: the memo is
    # keyed by (set of the others, state) and holds the sets of info operations seen with it.
    # (An optional operation that returns still has to be linearized or skipped before its
    # return, so it counts with the others.)
    optional = [item.ret is None for item in items]
    pure = [item.effect == "reads" and not item.optional and item.ret is not None for item in items]
    sensitive = [item.sensitive for item in items]
    bit = [0] * count
    counts = [0, 0]
    for i, opt in enumerate(optional):
        bit[i] = 1 << counts[opt]
        counts[opt] += 1
    remaining = sum(1 for r in ret_of if r)
    reaches = [item.reaches if pure[i] and prune else None for i, item in enumerate(items)]
    # The resets running when each read is invoked (one that returned before could not be
    # pending while the read is); with those invoked while it runs, its possible rescuers.
    running: dict[int, None] = {}
    running_at: dict[int, list[int]] = {}
    for entry in range(1, size + 1):
        j = op_of[entry]
        if is_call[entry]:
            if reaches[j] is not None:
                running_at[j] = list(running)
            if items[j].resets:
                running[j] = None
        elif items[j].resets:
            running.pop(j, None)
    rescuers: dict[int, list[int]] = {}

    def rescued(i: int) -> bool:
        """Whether read i's state can still be set outright: by a reset that may lead to it,
        invoked before the read returns and not linearized yet."""
        found = rescuers.get(i)
        if found is None:
            reach = reaches[i]
            assert reach is not None
            during = [
                op_of[e]
                for e in range(call_of[i] + 1, ret_of[i])
                if is_call[e] and items[op_of[e]].resets
            ]
            found = [j for j in (*running_at[i], *during) if any(reach(v) for v in items[j].resets)]
            rescuers[i] = found
        for j in found:
            if optional[j]:
                if not extra & bit[j]:
                    return True
            elif not bits & bit[j]:
                return True
        return False

    # Blind info writes live beside the list, grouped by the state they write, in invocation
    # order: alike, so only the first unused one of a group is ever a candidate.
    side = [optional[i] and item.effect == "writes" for i, item in enumerate(items)]
    groups: dict[State, list[int]] = {}
    for _, kind, i in events:
        if kind == 0 and side[i]:
            (written,) = steps[i](ANY)
            groups.setdefault(written, []).append(i)
            entry = call_of[i]
            p, q = prv[entry], nxt[entry]
            nxt[p] = q
            prv[q] = p
    # Info operations that commute with everything but reads and only grow the state (a
    # counter's indeterminate adds; see `Counter.commutes`) live beside the list as well,
    # when every other operation but the reads commutes too: a linearization can move each
    # one later, past anything but a read, until it stands right before the read that sees
    # it (or drop it at the end). So the search never places one alone; a read it cannot do
    # now may instead take a run of them first (see `runs`): one branch instead of every
    # order of every subset. Alike ones are used in invocation order (see below).
    pooled = [False] * count
    pool_groups: list[list[int]] = []
    # (Not when another info operation could take from the state, as a negative add: a run
    # might need it placed within, where no read sees it.)
    if init is not ANY and all(
        (item.commutes and not (optional[i] and item.resets))
        or (pure[i] and item.reaches is not None)
        for i, item in enumerate(items)
    ):
        by_kind: dict[tuple[str, Any], list[int]] = {}
        for _, kind, i in events:
            item = items[i]
            if kind == 0 and optional[i] and not item.resets and steps[i](init) != (init,):
                pooled[i] = True
                by_kind.setdefault((item.op.f, hashable(item.op.value)), []).append(i)
                entry = call_of[i]
                p, q = prv[entry], nxt[entry]
                nxt[p] = q
                prv[q] = p
        pool_groups = list(by_kind.values())

    # With a pool and nothing that resets, every operation but the reads only grows the
    # state: then a read to come can see no less than the state plus every operation that
    # returned before it was invoked (those must come first). Checked a little way ahead,
    # it finds a run or an order that overshot a read long before that read is reached.
    lookahead = bool(pool_groups) and prune and not any(item.resets for item in items)
    counted = [ret_of[i] != 0 and not pure[i] and not item.optional for i, item in enumerate(items)]

    # For numbers (a counter), also the most it can see: the state plus every operation
    # invoked before it returned, pooled ones included.
    numeric = lookahead and _is_number(init)
    wanted = [
        item.op.result
        if numeric and reaches[i] is not None and _is_number(item.op.result)
        else None
        for i, item in enumerate(items)
    ]
    pool_deltas = [steps[members[0]](init)[0] - init for members in pool_groups] if numeric else []

    def overshot(at: State, usage: frozenset[tuple[int, ...]]) -> int:
        """The return of a read ahead that can no longer get its value, or 0."""
        entry = nxt[0]
        least = most = at
        if numeric:
            used = next(iter(usage))
            most -= sum(d * n for d, n in zip(pool_deltas, used, strict=True))
        for _ in range(LOOKAHEAD):
            if entry == tail:
                break
            i = op_of[entry]
            if is_call[entry]:
                reach = reaches[i]
                if reach is not None and not reach(least):
                    return int(ret_of[i])
                if numeric and not pure[i]:
                    most = max(steps[i](most))
            else:
                if counted[i]:
                    least = steps[i](least)[0]
                value = wanted[i]
                if value is not None:
                    pooled_then = sum(
                        d * bisect.bisect_left(calls, entry)
                        for d, calls in zip(pool_deltas, pool_calls, strict=True)
                    )
                    if most + pooled_then < value:
                        return int(entry)
            entry = nxt[entry]
        return 0

    # Which pooled operations a run uses is left open: the search keeps the set of usages
    # (how many of each group, the first ones of a group in invocation order) that explain
    # what it has linearized so far, all of the same effect, and a run only picks a new set
    # (those that extend one of them and let the read happen). So it never branches on
    # which ones (a +3 or a +1 and a +2), a choice whose mistakes would show only much later.
    pool_calls = [[call_of[m] for m in members] for members in pool_groups]
    unused: frozenset[tuple[int, ...]] = frozenset({(0,) * len(pool_groups)})
    extended: dict[tuple[int, State, frozenset[tuple[int, ...]], tuple[int, ...]], Any] = {}

    def runs(i: int, at: State, usage: frozenset[tuple[int, ...]], stuck_at: int) -> Any:
        """The usages after a run of pooled operations from `at` that lets read i happen,
        each extending one of `usage` with operations available now, and the state then:
        (usages, state), or None. Only runs along which the read can still get its value
        are followed (`reaches`), so for a counter they add up to the gap."""
        available = tuple(bisect.bisect_left(calls, stuck_at) for calls in pool_calls)
        key = (i, at, usage, available)
        if key in extended:
            return extended[key]
        reach = items[i].reaches
        assert reach is not None
        step = steps[i]
        found: set[tuple[int, ...]] = set()
        after: list[State] = []
        groups = len(pool_groups)

        def walk(g: int, s: State, u: tuple[int, ...], v: list[int]) -> None:
            if g == groups:
                if step(s) and v != list(u):
                    found.add(tuple(v))
                    if not after:
                        after.append(s)
                return
            walk(g + 1, s, u, v)
            members = pool_groups[g]
            for k in range(u[g], available[g]):
                s = steps[members[k]](s)[0]
                if not reach(s):
                    break
                v[g] = k + 1
                walk(g + 1, s, u, v)
            v[g] = u[g]

        for u in usage:
            walk(0, at, u, list(u))
        answer = (frozenset(found), after[0]) if found else None
        extended[key] = answer
        return answer

    # Other info operations that do the same thing are interchangeable too: use them in
    # invocation order (a linearization using any k of them can use the first k instead).
    before = [0] * count
    last_alike: dict[tuple[str, Any, Any, str], int] = {}
    for _, kind, i in events:
        item = items[i]
        if kind == 0 and optional[i] and not side[i]:
            op = item.op
            alike = (op.f, hashable(op.value), hashable(op.key), op.type)
            if alike in last_alike:
                before[i] = bit[last_alike[alike]]
            last_alike[alike] = i
    # Operations that return and do exactly the same thing (two adds of 1) are
    # interchangeable as well: of those available, only the one due first is a branch (a
    # linearization that placed another there works with the two swapped).
    group = [-1] * count
    groups_of: dict[tuple[str, Any, Any, Any], int] = {}
    for i, item in enumerate(items):
        if ret_of[i] and not item.optional and not pure[i]:
            op = item.op
            group[i] = groups_of.setdefault(
                (op.f, hashable(op.value), hashable(op.key), hashable(op.result)), i
            )
    alike_returning = len(groups_of) < sum(1 for g in group if g >= 0)

    def first_unused(written: State, extra: int, stuck_at: int) -> int:
        """The call entry of the first unused blind info write of `written` that is
        available (invoked before `stuck_at`), or 0."""
        for i in groups.get(written, ()):
            if not extra & bit[i]:
                entry = call_of[i]
                return entry if entry < stuck_at else 0
        return 0

    cache: dict[tuple[int, State, Any], list[int]] = {}

    def visit(key: tuple[int, State, Any], extras: int) -> bool:
        """Record a node; False if it (or one that can do all it can) was seen before."""
        seen = cache.get(key)
        if seen is None:
            cache[key] = [extras]
            return True
        for other in seen:
            if not other & ~extras:
                return False
        seen.append(extras)
        return True

    # A frame: the branches of a node (entries, best first), which one is being tried, the
    # node's state and sets, and whether its branch was forced (no alternative).
    # (An entry of `order` is a tuple for a run of pooled operations and the read after it.)
    stack: list[tuple[list[Any], int, State, int, int, bool, Any]] = []
    usage = unused
    state: State = init
    bits = 0  # non-info operations linearized
    extra = 0  # info operations linearized
    best = 0
    bound = 0  # the furthest return a pruned node's subtree might have reached
    culprit: int | None = None
    pushes = 0
    countdown = _CHECK_EVERY
    order: list[Any] = []
    tried = 0
    stuck_at = tail
    watchers: _Watchers | None = None  # built for a node when first needed
    fresh = True  # the current node's branches have not been computed yet
    try:
        while remaining:
            countdown -= 1
            if not countdown:
                countdown = _CHECK_EVERY
                budget.spend(pushes)
                yield pushes
            if fresh:
                fresh = False
                watchers = None
                order = []
                entry = nxt[0]
                forced = 0
                dead = 0
                while is_call[entry]:
                    i = op_of[entry]
                    if pure[i] and state is not ANY:
                        if steps[i](state):
                            if not forced:
                                forced = entry
                        elif not dead:
                            reach = reaches[i]
                            if reach is not None and not reach(state) and not rescued(i):
                                dead = ret_of[i]
                    order.append(entry)
                    entry = nxt[entry]
                stuck_at = entry  # the first return: its operation must come before it
                if lookahead and not dead and not forced:
                    dead = overshot(state, usage)
                if dead:
                    # A pending read can no longer see its value: no linearization from
                    # here passes its return (how far short of it they stop is not known).
                    order = []
                    if dead > bound:
                        bound = dead
                elif forced:
                    i = op_of[forced]
                    linearized = bits | bit[i]
                    if not visit((linearized, state, usage), extra):
                        order = []  # the forced child failed before: so does this node
                    else:
                        stack.append(([forced], 0, state, bits, extra, True, usage))
                        pushes += 1
                        bits = linearized
                        p = prv[forced]
                        q = nxt[forced]
                        nxt[p] = q
                        prv[q] = p
                        r = ret_of[i]
                        p = prv[r]
                        q = nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                        fresh = True
                        continue
                else:
                    if groups:
                        order.extend(
                            _side_candidates(
                                order,
                                state,
                                extra,
                                stuck_at,
                                op_of,
                                sensitive,
                                groups,
                                first_unused,
                            )
                        )
                    if alike_returning and len(order) > 1:
                        order = _first_due(order, op_of, group, due)
                    if pool_groups:
                        # No read is possible now (it would be forced): runs that make one so.
                        for e in list(order):
                            if pure[op_of[e]]:
                                run = runs(op_of[e], state, usage, stuck_at)
                                if run is not None:
                                    order.append((e, *run))  # type: ignore[arg-type]
                    if len(order) > 1:
                        if pool_groups:
                            key = _by_due(due) if ordering == "deadline" else _by_entry
                            order.sort(key=key)
                        elif ordering == "deadline":
                            order.sort(key=due.__getitem__)
                        else:  # entries are numbered in time order
                            order.sort()
                tried = 0
            moved = False
            while tried < len(order):
                entry = order[tried]
                if entry.__class__ is tuple:
                    entry, usages, after = entry
                    i = op_of[entry]
                    linearized = bits | bit[i]
                    if visit((linearized, after, usages), extra):
                        stack.append((order, tried, state, bits, extra, False, usage))
                        pushes += 1
                        state = after
                        bits = linearized
                        usage = usages
                        p = prv[entry]
                        q = nxt[entry]
                        nxt[p] = q
                        prv[q] = p
                        r = ret_of[i]
                        p = prv[r]
                        q = nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                        moved = True
                        break
                    tried += 1
                    continue
                i = op_of[entry]
                if optional[i]:
                    b = before[i]
                    if b and not extra & b:
                        tried += 1
                        continue
                    linearized, extras = bits, extra | bit[i]
                else:
                    linearized, extras = bits | bit[i], extra
                for after in steps[i](state):
                    if optional[i]:
                        if watchers is None:
                            watchers = _Watchers(order, op_of, sensitive)
                        if not watchers.consumed(entry, after, state, steps, op_of):
                            continue
                    if not visit((linearized, after, usage), extras):
                        continue
                    stack.append((order, tried, state, bits, extra, False, usage))
                    pushes += 1
                    state = after
                    bits = linearized
                    extra = extras
                    if not side[i]:
                        p = prv[entry]
                        q = nxt[entry]
                        nxt[p] = q
                        prv[q] = p
                    r = ret_of[i]
                    if r:
                        p = prv[r]
                        q = nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                    moved = True
                    break
                if moved:
                    break
                tried += 1
            if moved:
                fresh = True
                continue
            # Every branch failed: no linearization gets past `stuck_at` from here.
            if stuck_at > best and stuck_at != tail:
                best = stuck_at
                culprit = op_of[stuck_at]
            while True:
                if not stack:
                    if bound > best:
                        return _Run(False, bound, op_of[bound], exact=False)
                    return _Run(False, best, culprit)
                order, tried, state, bits, extra, was_forced, usage = stack.pop()
                entry = order[tried]
                if entry.__class__ is tuple:
                    entry = entry[0]
                i = op_of[entry]
                r = ret_of[i]
                if r:
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                    remaining += 1
                if not side[i]:
                    nxt[prv[entry]] = entry
                    prv[nxt[entry]] = entry
                if not was_forced:
                    break
            watchers = None
            # Resume the parent at the same branch: the entry may have other next states.
            stuck_at = _first_return(nxt, is_call)
    finally:
        budget.explored += pushes
    linearization: list[tuple[int, State]] = []
    # The pooled operations of each run: pick one final usage, then one before each run
    # that it extends (every usage of a run's set extends one of the set before it).
    chosen = next(iter(usage))
    runs_used: dict[int, list[int]] = {}
    for k in range(len(stack) - 1, -1, -1):
        frame = stack[k]
        entry = frame[0][frame[1]]
        if entry.__class__ is tuple:
            earlier = next(
                u for u in frame[6] if all(a <= b for a, b in zip(u, chosen, strict=True))
            )
            runs_used[k] = [
                m for g, members in enumerate(pool_groups) for m in members[earlier[g] : chosen[g]]
            ]
            chosen = earlier
    for k, frame in enumerate(stack):
        after = stack[k + 1][2] if k + 1 < len(stack) else state
        entry = frame[0][frame[1]]
        if entry.__class__ is tuple:  # a run of pooled operations, then the read
            entry = entry[0]
            s = frame[2]
            for m in sorted(runs_used[k], key=call_of.__getitem__):
                s = steps[m](s)[0]
                linearization.append((m, s))
        linearization.append((op_of[entry], after))
    return _Run(True, order=linearization)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _by_due(due: list[int]) -> Callable[[Any], tuple[bool, int]]:
    """Sort key of branches, earliest deadline first; runs of pooled operations after all
    others (an operation that must happen anyway explains a read better than one that may
    not have), by their read's deadline."""

    def key(entry: Any) -> tuple[bool, int]:
        return (True, due[entry[0]]) if entry.__class__ is tuple else (False, due[entry])

    return key


def _by_entry(entry: Any) -> tuple[bool, int]:
    """Sort key of branches in invocation order, runs of pooled operations last."""
    return (True, entry[0]) if entry.__class__ is tuple else (False, entry)


def _side_candidates(
    order: list[int],
    state: State,
    extra: int,
    stuck_at: int,
    op_of: list[int],
    sensitive: list[tuple[State, ...] | None],
    groups: dict[State, list[int]],
    first_unused: Callable[[State, int, int], int],
) -> list[int]:
    """The blind info writes worth trying at a node: for each state that some available
    operation is sensitive to, the first unused write of it; all groups if the current
    state is one of those (leaving it is what matters), if some operation has no short
    list, or if the state is unknown."""
    wanted: set[State] = set()
    every = state is ANY
    for entry in order:
        states = sensitive[op_of[entry]]
        if states is None:
            every = True
            break
        wanted.update(states)
    keys = groups.keys() if every or state in wanted else wanted
    found = []
    for written in keys:
        if written != state:
            entry = first_unused(written, extra, stuck_at)
            if entry:
                found.append(entry)
    return found


class _Watchers:
    """For one node: which available operations behave specially in which state, so that
    `consumed` looks only at those that could see a given change."""

    def __init__(
        self,
        order: list[int],
        op_of: list[int],
        sensitive: list[tuple[State, ...] | None],
    ) -> None:
        self.order = order = [entry for entry in order if entry.__class__ is int]
        self.by_state: dict[State, list[int]] = {}
        self.always: list[int] = []
        for entry in order:
            states = sensitive[op_of[entry]]
            if states is None:
                self.always.append(entry)
            else:
                for s in states:
                    self.by_state.setdefault(s, []).append(entry)

    def consumed(
        self, entry: int, after: State, state: State, steps: list[Step], op_of: list[int]
    ) -> bool:
        """Whether some other available operation X sees the effect of the optional one (at
        `entry`, leading from `state` to `after`): X is possible after it, and neither leads
        to the same states as X alone (then the optional one can be left out: it may not
        happen) nor leaves both states as they are (then the two commute, and the optional
        one, which has no deadline, can go after X). If no X sees it, some linearization
        that works does not put it here, so the search need not either. (An X that behaves
        the same in both states, as it does in all states but its sensitive ones, sees
        nothing.)"""
        if state is ANY or after is ANY:
            candidates: Iterable[int] = self.order
        else:
            candidates = (
                *self.by_state.get(after, ()),
                *self.by_state.get(state, ()),
                *self.always,
            )
        same = (state,)
        kept = (after,)
        for other in candidates:
            if other == entry:
                continue
            step = steps[op_of[other]]
            then = step(after)
            if not then:
                continue
            now = step(state)
            if then != now and not (then == kept and now == same):
                return True
        return False


def _first_due(order: list[int], op_of: list[int], group: list[int], due: list[int]) -> list[int]:
    """`order` with, of each group of alike operations, only the one due first."""
    first: dict[int, int] = {}
    for entry in order:
        g = group[op_of[entry]]
        if g >= 0:
            other = first.get(g)
            if other is None or due[entry] < due[other]:
                first[g] = entry
    return [
        entry for entry in order if group[op_of[entry]] < 0 or first[group[op_of[entry]]] == entry
    ]


def _first_return(nxt: list[int], is_call: list[bool]) -> int:
    entry = nxt[0]
    while is_call[entry]:
        entry = nxt[entry]
    return entry


def _items(model: Model, ops: Iterable[Op]) -> list[_Item]:
    """What the search needs; an info operation never returns (Jepsen, Knossos)."""
    items = []
    for op in ops:
        if op.type == "fail":
            continue
        step = model.step(op)
        if step is None:
            continue
        ret = op.complete if op.type == "ok" else None
        items.append(
            _Item(
                op,
                op.invoke,
                ret,
                step,
                effect=model.effect(op),
                sensitive=model.sensitive(op),
                commutes=_commutes(model, op),
                **_reaching(model, op),
            )
        )
    return items


def _commutes(model: Model, op: Op) -> bool:
    commutes = getattr(model, "commutes", None)
    return bool(commutes(op)) if commutes is not None else False


def _reaching(model: Model, op: Op) -> dict[str, Any]:
    """For models that say how their states grow (`grows`, `resets`: see `Register`): an ok
    read's test of whether a state can still turn into the one it saw without a reset, and
    the states an operation may set outright. With them the search drops a node as soon as
    a pending read can no longer be satisfied, instead of finding out at its return."""
    grows = getattr(model, "grows", None)
    resets = getattr(model, "resets", None)
    if grows is None or resets is None:
        return {}
    out: dict[str, Any] = {"resets": resets(op)}
    if op.f in READ_FS and op.type == "ok" and model.effect(op) == "reads":
        target = hashable(op.result)
        if isinstance(target, str):

            def reach(s: State) -> bool:
                return target.startswith(s) if s.__class__ is str else bool(grows(s, target))

        else:

            def reach(s: State) -> bool:
                return bool(grows(s, target))

        out["reaches"] = reach
    return out


#: Each ok read is compared with this many of the reads that started after it returned.
FOLLOWERS = 8


def _contradiction(items: Sequence[_Item]) -> _Run | None:
    """A quick proof that a partition is not linearizable, when there is one to see: two
    reads in real-time order where the later one's state cannot grow from the earlier one's
    (see `_reaching`) and no reset could be linearized between them. Then no linearization
    passes the later read's return (the first such return may come earlier: the run says
    it is not exact). Looks at FOLLOWERS reads after each, so a few milliseconds."""
    reads = sorted(
        (i for i, item in enumerate(items) if item.reaches is not None and item.ret is not None),
        key=lambda i: items[i].call,
    )
    if len(reads) < 2:
        return None
    resets = sorted(
        (item.call, math.inf if item.ret is None else item.ret) for item in items if item.resets
    )
    reset_calls = [call for call, _ in resets]
    latest_return = list(itertools.accumulate((ret for _, ret in resets), max))
    calls = [items[i].call for i in reads]
    found = -1
    found_at = math.inf
    for a in reads:
        first = items[a]
        states = first.step(ANY)
        if len(states) != 1:
            continue  # a read no state can give (or several): the search decides
        (seen,) = states
        after = bisect.bisect_right(calls, first.ret or 0.0)
        for b in reads[after : after + FOLLOWERS]:
            second = items[b]
            reach = second.reaches
            at = second.ret
            assert reach is not None and at is not None
            if at >= found_at or reach(seen):
                continue
            k = bisect.bisect_right(reset_calls, at)
            if k and latest_return[k - 1] >= first.call:
                continue  # a reset may have come between them
            found, found_at = b, at
    if found < 0:
        return None
    position = next(
        pos for pos, (_, kind, i) in enumerate(_events(items), 1) if kind == 1 and i == found
    )
    return _Run(False, position, found, exact=False)


#: A read's window (the resets that may have fed it) is looked through up to this many.
FEED_LIMIT = 48


def _unfed(items: Sequence[_Item], init: State) -> _Run | None:
    """A quick proof that a partition is not linearizable: an ok read that nothing could
    have fed. Its state comes from the last reset before it (or the initial state) grown
    by operations that reset nothing (see `_reaching`); here every reset that could leave
    a state growing into what it saw was invoked after the read returned, or returned before
    a reset that certainly happened before the read began and leaves a state that cannot
    (which also rules out the initial state). A read of a value overwritten before it began,
    or written only after it ended. Reads with more than FEED_LIMIT resets in their window
    are left to the search."""
    resets = [i for i, item in enumerate(items) if item.resets]
    by_call = sorted(resets, key=lambda i: items[i].call)
    calls = [items[i].call for i in by_call]
    definite = sorted(
        (i for i in resets if items[i].ret is not None and not items[i].optional),
        key=lambda i: items[i].ret or 0.0,
    )
    rets = [items[i].ret or 0.0 for i in definite]
    longest = max(
        ((items[i].ret or 0.0) - items[i].call for i in resets if items[i].ret is not None),
        default=0.0,
    )
    pending = [i for i in by_call if items[i].ret is None]
    pending_calls = [items[i].call for i in pending]
    found, found_at = -1, math.inf
    for r, read in enumerate(items):
        reach, until = read.reaches, read.ret
        if reach is None or until is None or until >= found_at:
            continue

        def feeds(item: _Item, reach: Callable[[State], bool] = reach) -> bool:
            return any(state is ANY or reach(state) for state in item.resets)

        # The latest call of a certain reset, over before the read began, that leaves a
        # state the read cannot see: every reset that returned before that call is over.
        overwritten = -math.inf
        before = bisect.bisect_left(rets, read.call)
        for k in reversed(definite[max(0, before - FEED_LIMIT) : before]):
            killer = items[k]
            if (killer.ret or 0.0) < overwritten:
                break  # it and those before it were invoked earlier still
            after = killer.step(ANY)
            if (
                after
                and not feeds(killer)
                and all(state is not ANY and not reach(state) for state in after)
            ):
                overwritten = max(overwritten, killer.call)
        if overwritten == -math.inf and (init is ANY or reach(init)):
            continue  # the initial state may be what it saw
        # The resets that may have fed it: invoked by its return, not over before
        # `overwritten` (those that never return, at any time).
        start = overwritten - longest
        low, high = bisect.bisect_left(calls, start), bisect.bisect_right(calls, until)
        earlier = bisect.bisect_left(pending_calls, start)
        if high - low + earlier > FEED_LIMIT:
            continue
        window, early = by_call[low:high], pending[:earlier]
        if any(
            feeds(items[i]) and (items[i].ret is None or (items[i].ret or 0.0) >= overwritten)
            for i in window
        ) or any(feeds(items[i]) for i in early):
            continue
        found, found_at = r, until
    if found < 0:
        return None
    position = next(
        pos for pos, (_, kind, i) in enumerate(_events(items), 1) if kind == 1 and i == found
    )
    return _Run(False, position, found, exact=False)


def _optional(step: Step) -> Step:
    """The same operation, or nothing at all (it took effect before the window)."""

    def maybe(s: State) -> tuple[State, ...]:
        afters = step(s)
        return afters if s in afters else (*afters, s)

    return maybe


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearizedOp:
    """One step of a linearization: the operation and the state it left (shown)."""

    op: Op
    state: str


@dataclass(frozen=True)
class Linearizability:
    """The verdict of `check`. `valid` is None when the search gave up (see `reason`).

    For a violation: `culprit` is the first operation whose completion no linearization
    reaches, `prefix` one linearization of everything before that point (the longest
    linearizable prefix, up to `prefix_until`), and `counterexample` a small set of
    operations that cannot be linearized together, starting from `counterexample_from` (the
    model's initial state, or any state at all). `failing` names the failing keys found
    (only the first, unless every key was asked for), `undecided` the keys whose search the
    budget cut short after one had failed already.
    """

    valid: bool | None
    model: str
    operations: int
    partitions: int
    elapsed: float
    explored: int
    reason: str = ""
    failing: tuple[Value, ...] = ()
    undecided: tuple[Value, ...] = ()
    key: Value = None
    culprit: Op | None = None
    counterexample: tuple[Op, ...] = ()
    counterexample_from: str = ""
    prefix: tuple[LinearizedOp, ...] = ()
    prefix_until: float | None = None
    explained: bool = True
    origin: float = 0.0

    @property
    def ok(self) -> bool:
        return self.valid is True

    def __str__(self) -> str:
        scope = (
            f"{self.operations} operations, {self.partitions} "
            f"{'partition' if self.partitions == 1 else 'partitions'}, "
            f"{self.explored} states, {self.elapsed:.2f} s"
        )
        if self.valid is True:
            return f"linearizable ({self.model} model; {scope})"
        if self.valid is None:
            return f"unknown: the check gave up, {self.reason} ({self.model} model; {scope})"
        o = self.origin
        where = "" if self.key is None else f" for key {self.key!r}"
        lines = [f"not linearizable ({self.model} model; {scope})"]
        if len(self.failing) > 1:
            keys = ", ".join(repr(k) for k in self.failing[:10])
            more = "" if len(self.failing) <= 10 else f" and {len(self.failing) - 10} more"
            lines.append(f"  {len(self.failing)} keys fail: {keys}{more}")
        if self.undecided:
            keys = ", ".join(repr(k) for k in self.undecided[:10])
            more = "" if len(self.undecided) <= 10 else f" and {len(self.undecided) - 10} more"
            lines.append(
                f"  undecided within the budget ({self.reason or 'stopped'}): {keys}{more}"
            )
        if self.culprit is not None:
            lines.append(
                f"  no linearization{where} reaches the completion of #{self.culprit.id} at "
                f"t={self.culprit.complete - o if self.culprit.complete is not None else 0:.3f}"
            )
        if not self.explained:
            lines.append(
                "  (explaining it ran out of time: the operations below conflict, but fewer "
                "might do)"
            )
        if self.counterexample:
            lines.append(
                f"  these {len(self.counterexample)} operations cannot be linearized together "
                f"(starting from {self.counterexample_from}, whatever the others did):"
            )
            lines.extend("    " + op.describe(o) for op in self.counterexample)
        if self.prefix_until is not None:
            shown = self.prefix[-8:]
            lines.append(
                f"  longest linearizable prefix: up to t={self.prefix_until - o:.3f}, "
                f"{len(self.prefix)} operations linearized"
                + (f"; its last {len(shown)}:" if shown else "")
            )
            lines.extend(f"    {step.op.describe(o)}  => {step.state}" for step in shown)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Checking and explaining
# ---------------------------------------------------------------------------------------


def check(
    history: BaseHistory | Iterable[Op],
    model: str | Model = "register",
    *,
    initial: Any = ...,
    timeout: float | None = None,
    max_states: int | None = None,
    all_keys: bool = False,
    explain: bool = True,
    workers: int | None = None,
) -> Linearizability:
    """Is `history` linearizable with respect to `model` ("register", "kv", "counter", or a
    `Model`), starting from `initial` (default: None; 0 for a counter)?

    `fail` operations are left out (they did not happen); `info` ones may have happened at
    any time after their invocation, or never. Operations whose times are equal count as
    overlapping. `kv` histories are checked key by key, easier keys first, the hard ones
    in `workers` processes (default: the CPUs available; 1: all in this process); the
    first key that is not linearizable settles the verdict, unless `all_keys` asks for
    every failing key. `timeout` (seconds) and `max_states` bound the search; past them the
    verdict is None (unknown) unless a key already failed (`undecided` names the keys left).
    Explaining a violation (skipped with `explain=False`) takes at most
    max(EXPLAIN_SECONDS, EXPLAIN_FACTOR x the verdict's time) more; cut short, the
    explanation says so."""
    started = time.monotonic()
    spec = resolve(model, initial)
    hist = history if isinstance(history, BaseHistory) else BaseHistory(history)
    ops = hist.ops
    origin = hist.origin
    deadline = None if timeout is None else started + timeout
    parts = spec.partition(ops)
    tasks = [(key, _items(spec, spec.prune(part))) for key, part in parts]
    init = spec.initial()

    def way(items: list[_Item], ordering: str) -> Way[_Run]:
        budget = _Budget(deadline, max_states)
        try:
            run = yield from _searching(items, init, budget, ordering)
        except _OutOfBudget:
            raise Exhausted(budget.reason) from None
        run.order = []  # not needed here; keeps the answer small between processes
        return Attempt(run, budget.explored)

    # Every key races its search orders (which one suits a history shows only by trying):
    # the first to finish answers. Smaller keys first. Keys with a quick proof of a
    # violation need no search (nor does any key, when the verdict alone was asked for).
    tasks.sort(key=lambda task: len(task[1]))
    proofs: dict[int, _Run] = {}
    for t, (_, items) in enumerate(tasks):
        if run := _contradiction(items) or _unfed(items, init):
            proofs[t] = run
            if not all_keys:
                break  # the first failing key settles the verdict
    searched = not proofs or all_keys
    outcome = decide(
        [
            [way(items, ordering) for ordering in ORDERINGS]
            if items and searched and t not in proofs
            else []
            for t, (_, items) in enumerate(tasks)
        ],
        lambda run: not run.valid and not all_keys,
        workers=workers,
        deadline=deadline,
        max_work=max_states,
        stagger=[STAGGER + 4 * len(items) for _, items in tasks],
    )
    outcome.answers.update(proofs)
    for t, (_, items) in enumerate(tasks):
        if not items:
            outcome.answers[t] = _Run(True)
    failures = [
        (tasks[t][0], tasks[t][1], run)
        for t, run in sorted(outcome.answers.items())
        if not run.valid
    ]
    undecided = tuple(
        key for t, (key, _) in enumerate(tasks) if t not in outcome.answers and searched
    )
    explored = outcome.work

    def result(valid: bool | None, **extra: Any) -> Linearizability:
        return Linearizability(
            valid=valid,
            model=spec.name,
            operations=sum(len(items) for _, items in tasks),
            partitions=len(parts),
            elapsed=time.monotonic() - started,
            explored=explored,
            origin=origin,
            undecided=undecided if failures and all_keys else (),
            **extra,
        )

    if not failures:
        return result(None, reason=outcome.reason) if undecided else result(True)

    def culprit_time(failure: tuple[Value, list[_Item], _Run]) -> float:
        _, items, run = failure
        ret = items[run.culprit].ret if run.culprit is not None else None
        return ret if ret is not None else float("inf")

    key, items, run = min(failures, key=culprit_time)
    explanation: dict[str, Any] = {}
    if explain:
        # The verdict is certain; explaining it gets a budget of its own, proportionate.
        now = time.monotonic()
        until = now + max(EXPLAIN_SECONDS, EXPLAIN_FACTOR * (now - started))
        if deadline is not None:
            until = min(until, deadline)
        if not run.exact:
            # A bound from a proof or from pruning: a plain search may find the first
            # return no linearization passes, with half of the time.
            try:
                halfway = now + (until - now) / 2
                exact = _search(items, init, _Budget(halfway, None), prune=False)
                if not exact.valid:
                    run = exact
            except _OutOfBudget:
                pass
        explaining = _Budget(until, None)
        explanation = _explain(spec, items, run, explaining)
        explored += explaining.explored
    return result(
        False,
        reason=outcome.reason,
        failing=tuple(k for k, _, _ in failures),
        key=key,
        culprit=items[run.culprit].op if run.culprit is not None else None,
        **explanation,
    )


def _valid(items: Sequence[_Item], init: State, budget: _Budget) -> bool:
    # Explaining mostly searches windows that are not linearizable, to the end: earliest
    # deadline first measured several times faster there than invocation order.
    return _search(items, init, budget, "deadline").valid


def _explain(spec: Model, items: list[_Item], run: _Run, budget: _Budget) -> dict[str, Any]:
    """The longest linearizable prefix and a minimal conflicting set, as far as the budget
    allows (the verdict itself is already certain)."""
    out: dict[str, Any] = {}
    events = _events(items)
    cut = run.best  # 1-based position of the return that no linearization passes
    call_pos: dict[int, int] = {}
    ret_pos: dict[int, int] = {}
    for pos, (_, kind, i) in enumerate(events, 1):
        (call_pos if kind == 0 else ret_pos)[i] = pos

    def as_info(item: _Item) -> _Item | None:
        info = replace(item.op, type="info")
        step = spec.step(info)
        return (
            None
            if step is None
            else _Item(
                item.op,
                item.call,
                None,
                step,
                effect=spec.effect(info),
                sensitive=spec.sensitive(info),
                commutes=_commutes(spec, info),
                **_reaching(spec, info),
            )
        )

    def prefix(including_cut: bool) -> list[_Item]:
        kept = []
        for i, item in enumerate(items):
            if call_pos[i] > cut:
                continue
            pos = ret_pos.get(i)
            if pos is not None and (pos < cut or (including_cut and pos == cut)):
                kept.append(item)
            else:
                pending = as_info(item)
                if pending is not None:
                    kept.append(pending)
        return kept

    out["prefix_until"] = events[cut - 2][0] if cut >= 2 else None
    failing = prefix(including_cut=True)
    window, init = _narrow(failing, spec.initial(), budget)
    out["counterexample"] = tuple(
        sorted((item.op for item in _shrink(window, init, budget)), key=_by_time)
    )
    out["counterexample_from"] = "any state" if init is ANY else spec.show(init)
    try:
        # The prefix up to (not including) the stuck return is linearizable: show one order.
        before = prefix(including_cut=False)
        shown = _search(before, spec.initial(), budget)
        if shown.valid:
            out["prefix"] = tuple(
                LinearizedOp(before[i].op, spec.show(state)) for i, state in shown.order
            )
        else:  # the cut was a bound (see _Run.exact), not the first return none passes
            out["prefix_until"] = None
    except _OutOfBudget:
        if not run.exact:
            out["prefix_until"] = None
    out["explained"] = not budget.reason
    return out


def _by_time(op: Op) -> tuple[float, int]:
    return (op.invoke, op.id)


def _window(items: Sequence[_Item], start: float) -> list[_Item]:
    """The operations from `start` on; those that were running at `start` become optional
    (they may have taken effect before it), those that had finished are left out."""
    window = []
    for item in items:
        if item.call >= start or item.ret is None:
            window.append(item)  # an info operation is optional already
        elif item.ret >= start:
            window.append(_maybe(item))
    return window


def _narrow(items: list[_Item], init: State, budget: _Budget) -> tuple[list[_Item], State]:
    """The latest start such that the operations from there on, from any state, still
    cannot be linearized (windows only grow more contradictory as they start earlier, so
    a binary search finds it). If none, the whole prefix from the initial state."""
    starts = sorted({item.call for item in items})
    try:
        if not starts or _valid(_window(items, starts[0]), ANY, budget):
            return items, init
    except _OutOfBudget:
        return items, init
    lo, hi = 0, len(starts) - 1  # invariant: the window at starts[lo] is not linearizable
    try:
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _valid(_window(items, starts[mid]), ANY, budget):
                hi = mid - 1
            else:
                lo = mid
    except _OutOfBudget:
        pass
    return _window(items, starts[lo]), ANY


def _maybe(item: _Item) -> _Item:
    """`item` made optional: it may also not have happened."""
    return replace(item, step=_optional(item.step), optional=True, effect="updates", sensitive=None)


def _shrink(window: list[_Item], init: State, budget: _Budget) -> list[_Item]:
    """Make operations optional one at a time while the window stays contradictory; the
    ones that must stay form a set that cannot be linearized on its own, even when every
    other one may or may not have happened. Cut short, the set is still such a set (each
    step kept the window contradictory), just not a minimal one."""
    if len(window) > SHRINK_LIMIT:
        return window
    current = list(window)
    essential = [item.ret is not None for item in current]
    try:
        for k, item in enumerate(window):
            if not essential[k]:
                continue
            trial = list(current)
            trial[k] = _maybe(item)
            if not _valid(trial, init, budget):
                current = trial
                essential[k] = False
    except _OutOfBudget:
        pass
    return [item for k, item in enumerate(window) if essential[k]] or window
