"""Random schedules: the steps `dcfire.chaos(...)` runs, drawn by `random.Random(seed)` alone.

The whole schedule is drawn before anything burns, from the seed, the kinds, the targets and
the timing parameters only, so the same seed gives the same kinds, targets and times (to the
millisecond), whatever the system does while it runs. Two faults that overlap in time never
share a site: one would undo the other's rules on the same containers.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Sequence
from typing import Any

from pytest_dcfire.chaos.kinds import KINDS, Kind, Targets, kind
from pytest_dcfire.chaos.schedule import Step
from pytest_dcfire.errors import ConfigError

WHERE = "dcfire.chaos"


def new_seed() -> int:
    """A fresh seed for a run that was given none (printed, so that it can be replayed)."""
    return secrets.randbelow(10**9)


def parse_span(key: str, value: Any) -> tuple[float, float]:
    """Seconds, as a number (drawn between half and one and a half times it) or (low, high)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        low, high = value
    else:
        low = high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(
                f"{WHERE}: {key}={value!r} must be seconds > 0: a number, or (low, high)"
            )
    if low > high:
        raise ConfigError(f"{WHERE}: {key}={value!r}: low {low} is above high {high}")
    if low == high and not isinstance(value, (tuple, list)):
        return float(low) * 0.5, float(low) * 1.5
    return float(low), float(high)


def parse_kinds(faults: Any, valid: Targets) -> list[Kind]:
    """The kinds to draw from (all available ones when None), each checked."""
    if faults is None:
        # Clocks only where the topology made them controllable, disks only where there are
        # volumes: not a mistake otherwise.
        optional = ("clock", "disk")
        names: list[Any] = [n for n in KINDS if n not in optional or KINDS[n].candidates(valid)]
    elif isinstance(faults, str):
        names = [faults]
    elif isinstance(faults, (tuple, list, set, frozenset)):
        names = sorted(faults) if isinstance(faults, (set, frozenset)) else list(faults)
    else:
        raise ConfigError(f"{WHERE}: faults={faults!r} must be a list of fault kinds")
    if not names:
        raise ConfigError(f"{WHERE}: faults=[] names no fault kind; available: {', '.join(KINDS)}")
    kinds = list(dict.fromkeys(kind(WHERE, name) for name in names))
    for k in kinds:
        if not k.candidates(valid):
            raise ConfigError(
                f"{WHERE}: fault kind {k.name!r} needs {k.targets}; this topology has the sites "
                f"{', '.join(valid.sites) or '(none)'}"
            )
    return kinds


def generate(
    kinds: Sequence[Kind],
    valid: Targets,
    seed: int,
    duration: float,
    interval: tuple[float, float],
    hold: tuple[float, float],
    max_at_once: int,
) -> list[Step]:
    """Draw a schedule: a fault at 0 s, then one every `interval` (drawn) while fewer than
    `max_at_once` are applied and a free target exists; each lasts `hold` (drawn), cut at
    `duration`."""
    rng = random.Random(seed)
    steps: list[Step] = []
    active: list[tuple[float, tuple[str, ...]]] = []  # (lift time, sites it occupies)
    t = 0.0
    while t < duration:
        active = [a for a in active if a[0] > t]
        if len(active) < max_at_once:
            busy = {site for _, sites in active for site in sites}
            choices = [
                (k, [c for c in k.candidates(valid) if not busy & set(_sites(valid, c))])
                for k in kinds
            ]
            choices = [(k, free) for k, free in choices if free]
            if choices:
                chosen, free = rng.choice(choices)
                targets = rng.choice(free)
                lasts = round(rng.uniform(*hold), 3)
                lift = min(round(t + lasts, 3), duration)
                options = chosen.draw_options(rng)
                steps.append(Step(t, chosen.name, targets, round(lift - t, 3), options))
                active.append((lift, _sites(valid, targets)))
        t = round(t + rng.uniform(*interval), 3)
    return steps


def _sites(valid: Targets, targets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for target in targets for s in valid.sites_of(target))


def check_max(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{WHERE}: max_at_once={value!r} must be an integer >= 1")
    return value


def check_duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{WHERE}: duration={value!r} must be a number of seconds > 0")
    if value <= 0:
        raise ConfigError(f"{WHERE}: duration={value!r} must be a number of seconds > 0")
    return float(value)
