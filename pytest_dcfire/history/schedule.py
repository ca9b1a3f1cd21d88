"""Deciding independent sub-problems (the keys of a history) easier first, in parallel.

How hard a key is shows only by trying, and which of several search orders suits it too. So
each key's searches are generators that yield every few hundred steps, and they all take
turns: the first search of a key to finish answers for it (its siblings are dropped), and
the easy keys answer first without any guess at their difficulty. They start in this
process (most histories end there, and no process is started for them); what is still
running after a while is split over forked worker processes, which carry the searches on
where they were (forking copies them, so nothing is pickled but the answers). The caller
says when one answer settles everything (a key that is not linearizable, when only a
verdict was asked for): then the workers are stopped at once. Where forking is not
available everything runs here.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: A search: yields its work so far now and then; returns its answer and total work.
Way = Generator[int, None, "Attempt[T]"]

#: Work (search states) done here before the rest goes to worker processes.
WARMUP = 20_000
#: Yields a search gets in one turn (each a few hundred steps).
TURN = 4


class Exhausted(Exception):
    """A search ran out of the caller's budget; `args[0]` says which part."""


@dataclass
class Attempt(Generic[T]):
    """A finished search: its answer and the work it did."""

    answer: T
    work: int


@dataclass
class Outcome(Generic[T]):
    answers: dict[int, T]
    work: int
    reason: str = ""  # why some tasks stayed undecided ("" if none did, or it stopped early)


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


@dataclass
class _Race(Generic[T]):
    """Searches taking turns; `live[task]` are the task's searches still running."""

    live: dict[int, list[Any]]
    done: dict[int, int] = field(default_factory=dict)  # work of the searches still running
    stagger: dict[int, int] = field(default_factory=dict)  # see `decide`

    def work(self) -> int:
        return sum(self.done.values())

    def turn(self, tasks: Sequence[int]) -> list[tuple[int, Attempt[T]]]:
        """One turn for every search of `tasks`; the tasks that finished, with answers."""
        finished = []
        for task in tasks:
            ways = self.live.get(task)
            if not ways:
                continue
            first = self.done.get(id(ways[0]), 0)
            delay = self.stagger.get(task, 0)
            for k, way in enumerate(ways):
                if k and first < k * delay:
                    break  # its turn comes once the first search has done its share
                try:
                    for _ in range(TURN):
                        self.done[id(way)] = next(way)
                except StopIteration as stop:
                    got: Attempt[T] = stop.value
                    for other in ways:
                        if other is not way:
                            other.close()
                        self.done.pop(id(other), None)
                    del self.live[task]
                    finished.append((task, got))
                    break
        return finished


def decide(
    ways: Sequence[Sequence[Way[T]]],
    settles: Callable[[T], bool],
    *,
    workers: int | None = None,
    deadline: float | None = None,
    max_work: int | None = None,
    stagger: Sequence[int] = (),
) -> Outcome[T]:
    """Decide tasks 0..len(ways)-1, each by whichever of its searches finishes first
    (searches raise `Exhausted` past the deadline). A task's k-th search joins once its
    first has done k x `stagger[task]` work (0: all at once): an easy task is then decided
    by one search alone, at half the cost. Starts here, continues in `workers` processes
    (default: the CPUs available; 1: here) after WARMUP states. Stops as soon as an answer
    `settles` everything, or past `max_work` states in all."""
    race: _Race[T] = _Race(
        {task: list(w) for task, w in enumerate(ways) if w}, stagger=dict(enumerate(stagger))
    )
    answers: dict[int, T] = {}
    work = 0
    count = min(workers or default_workers(), len(ways))
    try:
        while race.live:
            try:
                finished = race.turn(sorted(race.live))
            except Exhausted as exc:
                return Outcome(answers, work + race.work(), str(exc.args[0]))
            for task, got in finished:
                work += got.work
                answers[task] = got.answer
                if settles(got.answer):
                    return Outcome(answers, work + race.work())
            if max_work is not None and work + race.work() > max_work:
                return Outcome(answers, work + race.work(), f"explored more than {max_work} states")
            if work + race.work() > WARMUP and count > 1 and len(race.live) > 1 and _can_fork():
                return _parallel(race, settles, answers, work, max_work, count, deadline)
        return Outcome(answers, work)
    finally:
        for ways_left in race.live.values():
            for way in ways_left:
                way.close()


def _share(
    race: _Race[T], tasks: list[int], out: Any, max_work: int | None
) -> None:  # pragma: no cover - runs in a forked worker (coverage does not follow)
    """A worker: race `tasks` to the end, sending each answer as it comes."""
    try:
        while any(task in race.live for task in tasks):
            for task, got in race.turn(tasks):
                out.put((task, pickle.dumps(got)))
            if max_work is not None and race.work() > max_work:
                out.put(("exhausted", f"explored more than {max_work} states"))
                return
        out.put(("finished", race.work()))
    except Exhausted as exc:
        out.put(("exhausted", str(exc.args[0])))
    except BaseException as exc:
        try:
            out.put(("error", pickle.dumps(exc)))
        except Exception:
            out.put(("error", pickle.dumps(RuntimeError(repr(exc)))))


def _parallel(
    race: _Race[T],
    settles: Callable[[T], bool],
    answers: dict[int, T],
    work: int,
    max_work: int | None,
    count: int,
    deadline: float | None,
) -> Outcome[T]:
    ctx = multiprocessing.get_context("fork")
    out: Any = ctx.Queue()
    live = sorted(race.live)
    work += race.work()
    share = None if max_work is None else max(0, max_work - work) // count
    procs = [
        ctx.Process(target=_share, args=(race, live[w::count], out, share), daemon=True)
        for w in range(count)
    ]
    for proc in procs:
        proc.start()
    reason = ""
    running = len(procs)
    try:
        while running:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) + 2.0
            try:
                what, payload = out.get(timeout=wait)
            except queue.Empty:
                reason = "ran out of time"
                break
            if what == "finished":
                running -= 1
                work += payload
            elif what == "exhausted":
                reason = payload
                break
            elif what == "error":
                raise pickle.loads(payload)
            else:
                got: Attempt[T] = pickle.loads(payload)
                work += got.work
                answers[what] = got.answer
                if settles(got.answer):
                    break
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        for proc in procs:
            proc.join()
        out.close()
    return Outcome(answers, work, reason)
