"""Clock faults: what `dcfire.clock(...)` and `@clock(...)` ask for.

A clock fault moves the wall clock that a site's, a service's or an instance's processes
read (a jump of `offset` seconds, forward or back, and a drift `rate`), through the
libfaketime control files of `runtime/clocks.py`. Only services marked
`clock: controllable` in the topology can be moved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_dcfire.errors import ConfigError, one_target

if TYPE_CHECKING:
    from pytest_dcfire.topology.model import Topology

CLOCK_KEYWORDS = ("offset", "rate")


@dataclass(frozen=True)
class ClockSpec:
    """Move a target's wall clock by `offset` seconds and make it run at `rate`."""

    target: str
    offset: float = 0.0
    rate: float = 1.0

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        services: Iterable[str],
        where: str = "clock",
    ) -> ClockSpec:
        valid = tuple(dict.fromkeys((*sites, *services)))
        target = one_target(
            where,
            args,
            options,
            CLOCK_KEYWORDS,
            valid,
            "name one site, service or instance",
            "site, service or instance",
        )
        offset = options.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            raise ConfigError(f"{where}: offset={offset!r} must be a number of seconds (+ or -)")
        if not math.isfinite(offset):
            raise ConfigError(f"{where}: offset={offset!r} must be a finite number of seconds")
        rate = options.get("rate", 1.0)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ConfigError(f"{where}: rate={rate!r} must be a number > 0 (1.0: real speed)")
        if offset == 0 and rate == 1:
            raise ConfigError(f"{where}: give offset= (seconds) or rate= (nothing to do)")
        return cls(target, float(offset), float(rate))

    def timestamp(self) -> str:
        """The control file's text: `+3600`, `-86400`, `+0 x2.0`."""
        text = f"{self.offset:+g}"
        return text if self.rate == 1 else f"{text} x{self.rate:g}"

    def describe(self) -> str:
        parts = [f"{self.offset:+g} s"] if self.offset else []
        if self.rate != 1:
            parts.append(f"x{self.rate:g}")
        return ", ".join(parts)


def not_controllable(where: str, services: Iterable[str], source: str) -> ConfigError:
    """The error for a clock fault on services that keep the host's clock."""
    names = ", ".join(dict.fromkeys(services))
    return ConfigError(
        f"{where}: {names} keep(s) the host's clock (`clock: host`, the default); add "
        f"`clock: controllable` to that service in {source} (or at its top level, for "
        "every service)"
    )


def check_controllable(spec: ClockSpec, topology: Topology, where: str) -> None:
    """Refuse, at collection, a clock fault on a target whose services keep the host's
    clock."""
    fixed = [
        s.base
        for s in topology.services
        if spec.target in (s.site, s.name, s.base) and s.clock != "controllable"
    ]
    if fixed:
        raise not_controllable(where, fixed, topology.source)
