"""Timed fault schedules: the steps (`Step`), what happened (`Event`) and the background
runner (`Schedule`) behind `dcfire.schedule(steps)` and `dcfire.chaos(...)`.

The runner sleeps until each step's due time and applies it through the fire controller, so
that every fault is also on the test's timeline, marked in its workloads' histories and lifted
by `restore()` and the fixture's teardown like any other. Stopping lifts what is still
applied, waits for the darkened sites' health checks, then keeps a quiet period.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_dcfire.chaos.kinds import KINDS, Controller, Targets, kind
from pytest_dcfire.errors import ConfigError, FireError, check_keywords

#: Seconds of calm after the last fault is lifted and the sites are healthy again.
DEFAULT_QUIET = 2.0
#: The options key of a step that says how long its fault stays (seconds).
HOLD_KEY = "for"


class ChaosError(FireError):
    """A scheduled fault could not be applied or lifted."""


@dataclass(frozen=True)
class Step:
    """Apply `kind` to `targets` at `at` seconds after the start; lift it `hold` seconds
    later (None: it stays until the schedule stops)."""

    at: float
    kind: str
    targets: tuple[str, ...]
    hold: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def lift_at(self) -> float | None:
        return None if self.hold is None else round(self.at + self.hold, 6)

    def describe(self) -> str:
        joint = {"two sites": " | ", "two sites (from, to)": " -> "}.get(
            KINDS[self.kind].targets, "+"
        )
        extra = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.kind} {joint.join(self.targets)}" + (f" ({extra})" if extra else "")

    def __str__(self) -> str:
        until = "until stopped" if self.hold is None else f"for {self.hold:g} s"
        return f"{self.at:g} s: {self.describe()} {until}"


@dataclass
class Event:
    """A step as it happened: due, woke (the runner began applying it), applied (the fault
    in place) and lifted, in seconds after the schedule started; `late_ms` is how long after
    its due time it was in place, `wake_ms` the runner's own part of that."""

    step: Step
    due: float
    woke: float | None = None
    applied: float | None = None
    lifted: float | None = None
    error: str = ""

    @property
    def kind(self) -> str:
        return self.step.kind

    @property
    def targets(self) -> tuple[str, ...]:
        return self.step.targets

    @property
    def late_ms(self) -> float | None:
        return None if self.applied is None else (self.applied - self.due) * 1000.0

    @property
    def wake_ms(self) -> float | None:
        return None if self.woke is None else (self.woke - self.due) * 1000.0

    def __str__(self) -> str:
        text = self.step.describe()
        if self.applied is None:
            return f"{text}: not applied (due {self.due:.3f} s){self._error()}"
        late = (self.applied - self.due) * 1000.0
        text += f": applied at {self.applied:.3f} s (due {self.due:.3f} s, {late:.0f} ms late)"
        text += "; still applied" if self.lifted is None else f", lifted at {self.lifted:.3f} s"
        return text + self._error()

    def _error(self) -> str:
        return f"; {self.error}" if self.error else ""


def _number(where: str, key: str, value: Any, positive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{where}: {key}={value!r} must be a number of seconds {bound}")
    return float(value)


def parse_step(where: str, raw: Any, valid: Targets) -> Step:
    """One step: a `Step`, or a tuple `(at, kind, target_or_targets[, options])` whose
    options hold `"for": seconds` and the kind's own keywords (a brownout's latency...)."""
    if isinstance(raw, Step):
        at, name, targets, options = raw.at, raw.kind, raw.targets, dict(raw.options)
        if raw.hold is not None:
            options[HOLD_KEY] = raw.hold
    elif isinstance(raw, (tuple, list)) and len(raw) in (3, 4):
        at, name, targets = raw[0], raw[1], raw[2]
        options = raw[3] if len(raw) == 4 else {}
    else:
        raise ConfigError(
            f"{where}: a step is (at, kind, target(s)) or (at, kind, target(s), options), "
            f"e.g. (5.0, 'fire', 'pangyo', {{'for': 8}}); got {raw!r}"
        )
    at = _number(where, "at", at, positive=False)
    entry = kind(where, name)
    if isinstance(targets, str):
        targets = (targets,)
    if not isinstance(targets, (tuple, list)) or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"{where}: targets {targets!r} must be a name or a tuple of names")
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ConfigError(f"{where}: options {options!r} must be a dict of keywords")
    check_keywords(where, options, (HOLD_KEY, *entry.options))
    own = {k: v for k, v in options.items() if k != HOLD_KEY}
    hold = options.get(HOLD_KEY)
    if hold is not None:
        hold = _number(where, f"{HOLD_KEY!r}", hold, positive=True)
    entry.check_targets(where, tuple(targets), valid)
    entry.check_options(where, tuple(targets), own, valid)
    return Step(at, entry.name, tuple(targets), hold, own)


def parse_steps(where: str, steps: Any, valid: Targets) -> list[Step]:
    """Validate every step, each error naming the step; sorted by due time (stable)."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise ConfigError(f"{where}: steps must be a list of steps, got {steps!r}")
    parsed = [parse_step(f"{where}: step {i} {raw!r}", raw, valid) for i, raw in enumerate(steps)]
    if not parsed:
        raise ConfigError(f"{where}: no steps given")
    return sorted(parsed, key=lambda s: s.at)


class Schedule:
    """A running schedule: `.events` (what was applied, when, and lifted), `.stop()`, and a
    context manager that stops it when the block is left. `.seed` is the seed of a random one."""

    def __init__(
        self,
        controller: Controller,
        steps: Sequence[Step],
        *,
        quiet: float = DEFAULT_QUIET,
        seed: int | None = None,
        name: str = "schedule",
    ) -> None:
        self.controller = controller
        self.steps = tuple(steps)
        self.quiet = _number(f"dcfire.{name}", "quiet", quiet, positive=False)
        self.seed = seed
        self.name = name
        self.events: list[Event] = []
        self.started: float | None = None  # time.monotonic() at start
        self._active: dict[int, tuple[Event, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = False
        self._failures: list[str] = []
        self._reported = False
        agenda: list[tuple[float, int, int]] = []  # (due, 0 lift / 1 apply, step index)
        for i, step in enumerate(self.steps):
            agenda.append((step.at, 1, i))
            if step.lift_at is not None:
                agenda.append((step.lift_at, 0, i))
        self._agenda = sorted(agenda)
        self._thread = threading.Thread(target=self._run, name=f"dcfire-{name}", daemon=True)

    def __repr__(self) -> str:
        seed = f" seed={self.seed}" if self.seed is not None else ""
        state = "running" if self.running else "stopped"
        return f"<Schedule {self.name}{seed} {len(self.steps)} steps, {state}>"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def active(self) -> list[Event]:
        """The events whose fault is applied right now."""
        with self._lock:
            return [ev for ev, _ in self._active.values()]

    def start(self) -> Schedule:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __enter__(self) -> Schedule:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.stop()
        except ChaosError:
            if exc_type is None:  # the block's own exception says more; its events keep ours
                raise

    # -- the runner thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self.started is not None
        for due, is_apply, index in self._agenda:
            delay = self.started + due - time.monotonic()
            if (delay > 0 and self._stop.wait(delay)) or self._stop.is_set():
                return
            if not (self._apply(index, due) if is_apply else self._lift(index)):
                return

    def _apply(self, index: int, due: float) -> bool:
        assert self.started is not None
        step = self.steps[index]
        event = Event(step, due, woke=time.monotonic() - self.started)
        try:
            handle = KINDS[step.kind].apply(self.controller, step.targets, step.options)
        except Exception as exc:
            event.error = f"apply failed: {exc}"
            with self._lock:
                self.events.append(event)
                self._failures.append(str(event))
            return False
        event.applied = time.monotonic() - self.started
        with self._lock:
            self.events.append(event)
            self._active[index] = (event, handle)
        return True

    def _lift(self, index: int) -> bool:
        assert self.started is not None
        with self._lock:
            entry = self._active.pop(index, None)
        if entry is None:
            return True
        event, handle = entry
        try:
            KINDS[event.kind].lift(handle)
        except Exception as exc:
            event.error = f"lift failed: {exc}"
            with self._lock:
                self._failures.append(str(event))
            return False
        finally:
            event.lifted = time.monotonic() - self.started
        return True

    # -- stopping ---------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> list[Event]:
        """Let every step run (or `timeout` seconds pass), then `stop()`."""
        if self.started is not None:
            self._thread.join(timeout)
        return self.stop()

    def stop(self) -> list[Event]:
        """Stop applying steps, lift every fault still applied, wait for the darkened
        sites' health checks, keep the quiet period; raise ChaosError if a step failed."""
        first = not self._stopped
        self._halt()
        if first and self.quiet:
            time.sleep(self.quiet)  # a fixed calm, not a retry: nothing to poll
        self._raise()
        return self.events

    def halt(self) -> None:
        """`stop()` without the quiet period: what `restore()` and the teardown call."""
        self._halt()
        self._raise()

    def _halt(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        for index in sorted(self._active, reverse=True):  # the most recent first
            self._lift(index)
        self._settle()

    def _settle(self) -> None:
        """Wait for the health checks of the sites this schedule darkened (not those another
        fire of the test still burns)."""
        still = set(self.controller.burning)
        sites = dict.fromkeys(
            site
            for event in self.events
            if event.applied is not None and KINDS[event.kind].darkens
            for site in event.targets
            if site not in still
        )
        handles = [h for site in sites for h in self.controller.system.in_site(site)]
        if handles:
            try:
                self.controller.system.wait_healthy(handles)
            except Exception as exc:
                self._failures.append(f"after the schedule, {', '.join(sites)} not healthy: {exc}")

    def _raise(self) -> None:
        if self._failures and not self._reported:
            self._reported = True
            seed = f" (seed {self.seed})" if self.seed is not None else ""
            raise ChaosError(f"dcfire.{self.name}{seed}: " + "; ".join(self._failures))
