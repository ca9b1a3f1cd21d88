"""Starting a schedule on a running system: the targets it may aim at, a hand-written
schedule (`dcfire.schedule(steps)`) and a seeded one (`dcfire.chaos(...)`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_dcfire.chaos.generator import (
    check_duration,
    check_max,
    generate,
    new_seed,
    parse_kinds,
    parse_span,
)
from pytest_dcfire.chaos.kinds import Controller, Targets
from pytest_dcfire.chaos.schedule import DEFAULT_QUIET, Schedule, parse_steps
from pytest_dcfire.chaos.seed import parse_seed
from pytest_dcfire.seams import RunningSystem


def targets_of(system: RunningSystem, exclude: Iterable[str] = ()) -> Targets:
    """The sites and services of the running system a schedule may aim at, in topology
    order; `exclude` (sites kept dark by others, e.g. the suite burn) is left out."""
    skip = set(exclude)
    sites = tuple(s for s in system.sites if s not in skip)
    services: dict[str, tuple[str, ...]] = {}
    for svc in system.topology.services:
        if svc.site in skip:
            continue
        services.setdefault(svc.name, (svc.site,))
        base = services.get(svc.base, ())
        if svc.base != svc.name and svc.site not in base:
            services[svc.base] = (*base, svc.site)

    def controllable(name: str) -> bool:
        members = [s for s in system.topology.services if name in (s.site, s.name, s.base)]
        return bool(members) and all(getattr(s, "clock", "host") == "controllable" for s in members)

    def has_volumes(name: str) -> bool:
        members = [s for s in system.topology.services if name in (s.site, s.name, s.base)]
        return any(getattr(s, "volumes", ()) for s in members)

    clocks = tuple(name for name in (*sites, *services) if controllable(name))
    disks = tuple(name for name in (*sites, *services) if has_volumes(name))
    return Targets(sites, services, clocks, disks)


def schedule(
    controller: Controller, steps: Any, valid: Targets, quiet: float = DEFAULT_QUIET
) -> Schedule:
    """Validate `steps` and start running them in the background."""
    parsed = parse_steps("dcfire.schedule", steps, valid)
    return Schedule(controller, parsed, quiet=quiet, name="schedule").start()


def chaos(
    controller: Controller,
    valid: Targets,
    *,
    faults: Any = None,
    seed: Any = None,
    replay: int | None = None,
    duration: Any = 30.0,
    interval: Any = 5.0,
    hold: Any = None,
    max_at_once: Any = 1,
    quiet: float = DEFAULT_QUIET,
) -> Schedule:
    """Draw a random schedule (seed: given, else `replay` from --dcfire-seed, else new) and
    start it in the background."""
    chosen = (
        parse_seed("dcfire.chaos: seed", seed)
        if seed is not None
        else (replay if replay is not None else new_seed())
    )
    kinds = parse_kinds(faults, valid)
    gaps = parse_span("interval", interval)
    steps = generate(
        kinds,
        valid,
        chosen,
        duration=check_duration(duration),
        interval=gaps,
        hold=gaps if hold is None else parse_span("hold", hold),
        max_at_once=check_max(max_at_once),
    )
    return Schedule(controller, steps, quiet=quiet, seed=chosen, name="chaos").start()
