"""The fault kinds a schedule can apply: each maps a kind name to how it is applied on the fire
controller, how it is lifted, what it targets and, for `chaos()`, how its options are drawn.

Adding a kind is one entry in `KINDS` (and removing its line from `NOT_YET`): the schedule,
the random generator and the validation read everything they need from the entry.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_dcfire.clockfaults import ClockSpec
from pytest_dcfire.diskfaults import DISK_KINDS, DiskKind, DiskSpec
from pytest_dcfire.errors import ConfigError, did_you_mean, unknown_name
from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec
from pytest_dcfire.modes import Mode


class SystemView(Protocol):
    """What a schedule reads of the running system: a site's containers, and their health."""

    def in_site(self, site: str) -> Sequence[Any]: ...

    def wait_healthy(self, handles: Sequence[Any]) -> Any: ...


@runtime_checkable
class Controller(Protocol):
    """The members of the fire controller (`dcfire`) that schedules use, and only those:
    faults go through it, so `restore()` and the fixture's teardown cover them too."""

    @property
    def system(self) -> SystemView: ...

    @property
    def burning(self) -> tuple[str, ...]: ...

    def fire(
        self,
        *sites: str,
        mode: Mode = "fire",
        network: bool = True,
        storage: bool | DiskKind = True,
    ) -> Any: ...

    def partition(self, *groups: str | Sequence[str], one_way: bool = False) -> Any: ...

    def flaky(self, target: str, loss: float) -> Any: ...

    def brownout(
        self,
        site_or_service: str,
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: int | None = None,
    ) -> Any: ...

    def clock(self, target: str, offset: float = 0.0, rate: float = 1.0) -> Any: ...

    def disk(self, target: str, kind: DiskKind) -> Any: ...


#: What a kind's targets are: one or more sites, exactly two sites (in either order, or the
#: order matters: from, to), or one site or service.
SITES = "sites"
SITE_PAIR = "two sites"
SITE_PATH = "two sites (from, to)"
SITE_OR_SERVICE = "site or service"
#: One site or service whose every instance has `clock: controllable`.
CLOCK_TARGET = "a site or service with `clock: controllable`"
#: One site or service with at least one volume.
DISK_TARGET = "a site or service with volumes"


@dataclass(frozen=True)
class Targets:
    """What a schedule may aim at: the sites, and each service (instance or base name) with
    the sites it lives in (two faults at once never share a site)."""

    sites: tuple[str, ...]
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Sites and services whose every instance has `clock: controllable`.
    clocks: tuple[str, ...] = ()
    #: Sites and services with at least one volume (what a disk fault acts on).
    disks: tuple[str, ...] = ()

    def sites_of(self, target: str) -> tuple[str, ...]:
        return (target,) if target in self.sites else tuple(self.services.get(target, ()))


Apply = Callable[[Controller, tuple[str, ...], Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Kind:
    """One fault kind: `apply(controller, targets, options)` returns what `lift(handle)`
    undoes; `darkens` says the targets' sites must pass their health checks afterwards."""

    name: str
    targets: str
    apply: Apply
    lift: Callable[[Any], None]
    options: tuple[str, ...] = ()
    draw_options: Callable[[random.Random], dict[str, Any]] = field(default=lambda rng: {})
    darkens: bool = False
    #: Checks option values (keywords are checked against `options` first).
    check_options: Callable[[str, tuple[str, ...], Mapping[str, Any], Targets], None] = field(
        default=lambda where, targets, options, valid: None
    )

    def check_targets(self, where: str, targets: tuple[str, ...], valid: Targets) -> None:
        """Refuse targets this kind cannot take, naming what would be valid."""
        if self.targets == CLOCK_TARGET:
            if len(targets) != 1 or targets[0] not in valid.clocks:
                shown = ", ".join(valid.clocks) or "none: add `clock: controllable` to a service"
                raise ConfigError(
                    f"{where}: {self.name} takes one site or service with "
                    f"`clock: controllable`, got {list(targets)}; valid: {shown}"
                )
            return
        if self.targets == DISK_TARGET:
            if len(targets) != 1 or targets[0] not in valid.disks:
                shown = ", ".join(valid.disks) or "none: no service has volumes"
                raise ConfigError(
                    f"{where}: {self.name} takes one site or service with volumes, got "
                    f"{list(targets)}; valid: {shown}"
                )
            return
        if self.targets == SITE_OR_SERVICE:
            names = valid.sites + tuple(valid.services)
            if len(targets) != 1:
                raise ConfigError(
                    f"{where}: {self.name} takes one site or service, got {len(targets)} "
                    f"targets {list(targets)}; valid: {', '.join(names)}"
                )
            if targets[0] not in names:
                raise unknown_name(where, "site or service", targets[0], names)
            return
        if self.targets in (SITE_PAIR, SITE_PATH) and (
            len(targets) != 2 or targets[0] == targets[1]
        ):
            raise ConfigError(
                f"{where}: {self.name} takes two different sites, got {list(targets)}; "
                f"valid sites: {', '.join(valid.sites)}"
            )
        if not targets:
            raise ConfigError(
                f"{where}: {self.name} needs at least one site; valid sites: "
                f"{', '.join(valid.sites)}"
            )
        for site in targets:
            if site not in valid.sites:
                raise unknown_name(where, "site", site, valid.sites)

    def candidates(self, valid: Targets) -> list[tuple[str, ...]]:
        """Every target a random schedule may draw for this kind, in a fixed order."""
        if self.targets == CLOCK_TARGET:
            return [(name,) for name in valid.clocks]
        if self.targets == DISK_TARGET:
            return [(name,) for name in valid.disks]
        if self.targets == SITE_OR_SERVICE:
            return [(name,) for name in (*valid.sites, *valid.services)]
        if self.targets == SITE_PAIR:
            s = valid.sites
            return [(a, b) for i, a in enumerate(s) for b in s[i + 1 :]]
        if self.targets == SITE_PATH:
            return [(a, b) for a in valid.sites for b in valid.sites if a != b]
        return [(site,) for site in valid.sites]


def _fire(mode: Mode) -> Apply:
    def apply(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
        return ctl.fire(*targets, mode=mode)

    return apply


def _extinguish(fire: Any) -> None:
    # No health wait here: the schedule goes on; it waits for health once, when it stops.
    fire.extinguish(wait=False)


def _lift(fault: Any) -> None:
    fault.lift()


def _partition(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.partition(targets[0], targets[1])


def _one_way(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.partition(targets[0], targets[1], one_way=True)


def _flaky(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.flaky(targets[0], **options)


def _check_flaky(
    where: str, targets: tuple[str, ...], options: Mapping[str, Any], valid: Targets
) -> None:
    FlakySpec.parse(targets, options, valid.sites, tuple(valid.services), where=where)


def _draw_flaky(rng: random.Random) -> dict[str, Any]:
    return {"loss": rng.choice((0.1, 0.2, 0.3, 0.5))}


def _brownout(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.brownout(targets[0], **options)


def _check_brownout(
    where: str, targets: tuple[str, ...], options: Mapping[str, Any], valid: Targets
) -> None:
    BrownoutSpec.parse(targets, options, valid.sites, tuple(valid.services), where=where)


def _draw_brownout(rng: random.Random) -> dict[str, Any]:
    return {"latency": rng.choice((50, 100, 200, 500, 1000))}


def _clock(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.clock(targets[0], **options)


def _draw_clock(rng: random.Random) -> dict[str, Any]:
    return {"offset": rng.choice((-86400, -3600, -60, 60, 3600, 86400))}


def _check_clock(
    where: str, targets: tuple[str, ...], options: Mapping[str, Any], valid: Targets
) -> None:
    ClockSpec.parse(targets, options, valid.sites, tuple(valid.services), where=where)


def _disk(ctl: Controller, targets: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    return ctl.disk(targets[0], options["kind"])


def _draw_disk(rng: random.Random) -> dict[str, Any]:
    return {"kind": rng.choice(DISK_KINDS)}


def _check_disk(
    where: str, targets: tuple[str, ...], options: Mapping[str, Any], valid: Targets
) -> None:
    DiskSpec.parse(targets, options, valid.sites, tuple(valid.services), where=where)


KINDS: dict[str, Kind] = {
    "fire": Kind("fire", SITES, _fire("fire"), _extinguish, darkens=True),
    "power-loss": Kind("power-loss", SITES, _fire("power-loss"), _extinguish, darkens=True),
    "crash": Kind("crash", SITES, _fire("crash"), _extinguish, darkens=True),
    "freeze": Kind("freeze", SITES, _fire("freeze"), _extinguish, darkens=True),
    "partition": Kind("partition", SITE_PAIR, _partition, _lift),
    "brownout": Kind(
        "brownout",
        SITE_OR_SERVICE,
        _brownout,
        _lift,
        options=("latency", "jitter", "bandwidth"),
        draw_options=_draw_brownout,
        check_options=_check_brownout,
    ),
    "clock": Kind(
        "clock",
        CLOCK_TARGET,
        _clock,
        _lift,
        options=("offset", "rate"),
        draw_options=_draw_clock,
        check_options=_check_clock,
    ),
    "one-way": Kind("one-way", SITE_PATH, _one_way, _lift),
    "flaky": Kind(
        "flaky",
        SITE_OR_SERVICE,
        _flaky,
        _lift,
        options=("loss",),
        draw_options=_draw_flaky,
        check_options=_check_flaky,
    ),
    "disk": Kind(
        "disk",
        DISK_TARGET,
        _disk,
        _lift,
        options=("kind",),
        draw_options=_draw_disk,
        check_options=_check_disk,
    ),
}

#: Pinned kind names whose fault does not exist yet, and what will bring it.
NOT_YET: dict[str, str] = {}


def kind(where: str, name: object) -> Kind:
    """The registry entry of `name`, or one clear error (unknown, or not available yet)."""
    if isinstance(name, str) and name in KINDS:
        return KINDS[name]
    available = ", ".join(KINDS)
    if isinstance(name, str) and name in NOT_YET:
        raise ConfigError(
            f"{where}: fault kind {name!r} is not available yet (it needs {NOT_YET[name]}, "
            f"which this version does not have); available kinds: {available}"
        )
    hint = did_you_mean(name, KINDS) if isinstance(name, str) else ""
    raise ConfigError(f"{where}: unknown fault kind {name!r}{hint}; available kinds: {available}")
