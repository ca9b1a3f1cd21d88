"""Schedules and seeded chaos: faults applied in the background on a timetable, written by
hand (`dcfire.schedule(steps)`) or drawn from a seed (`dcfire.chaos(...)`).

- kinds.py: the registry of fault kinds (name -> apply/lift on the fire controller);
- schedule.py: steps, events and the timed runner thread;
- generator.py: the seeded random schedule;
- run.py: starting a schedule on a running system (`targets_of`, `schedule`, `chaos`;
  `run.schedule`, as `schedule` here is the submodule);
- seed.py: `--dcfire-seed` / `dcfire_seed`.

The names below load on first use: the plugin imports seed.py in every pytest run, and a
run that never calls `dcfire.chaos()` need not pay for the generator and the schedules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_dcfire.lazy import lazy_names

if TYPE_CHECKING:
    from pytest_dcfire.chaos.kinds import KINDS, NOT_YET, Controller, Targets
    from pytest_dcfire.chaos.run import chaos, targets_of
    from pytest_dcfire.chaos.schedule import DEFAULT_QUIET, ChaosError, Event, Schedule, Step

#: Each public name -> the submodule that defines it.
_WHERE = {
    "DEFAULT_QUIET": "schedule",
    "KINDS": "kinds",
    "NOT_YET": "kinds",
    "ChaosError": "schedule",
    "Controller": "kinds",
    "Event": "schedule",
    "Schedule": "schedule",
    "Step": "schedule",
    "Targets": "kinds",
    "chaos": "run",
    "targets_of": "run",
}

__all__ = [
    "DEFAULT_QUIET",
    "KINDS",
    "NOT_YET",
    "ChaosError",
    "Controller",
    "Event",
    "Schedule",
    "Step",
    "Targets",
    "chaos",
    "targets_of",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
