"""Link faults: what a brownout or a partition between two sites asks for, and its record.

A fire takes a whole site down; a link fault degrades or cuts only what joins sites: a
*brownout* adds latency, jitter and a bandwidth limit to every link that touches a site (or
one service), the way a failing WAN line looks before it dies; a *partition* cuts everything
between two sites (their containers' direct traffic and the links between them), each site
staying up and reachable from everywhere else (split brain). Specs are validated the same
way for the `dcfire` fixture and for the markers `@brownout(...)` and `@partition(...)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_dcfire.errors import ConfigError, check_keywords, one_of, unknown_name
from pytest_dcfire.faults.timing import FaultTiming

BROWNOUT_KEYWORDS = ("latency", "jitter", "bandwidth")


@dataclass(frozen=True)
class BrownoutSpec:
    """Latency and jitter (ms, one way, each direction) and bandwidth (KB/s) on a target."""

    target: str
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        services: Iterable[str],
        where: str = "brownout",
    ) -> BrownoutSpec:
        valid = tuple(dict.fromkeys((*sites, *services)))
        check_keywords(where, options, BROWNOUT_KEYWORDS)
        if len(args) != 1 or not isinstance(args[0], str):
            raise ConfigError(f"{where}: name one site or service to brown out; {one_of(valid)}")
        target = args[0]
        if target not in valid:
            raise unknown_name(where, "site or service", target, valid)
        values: dict[str, float] = {}
        for key in ("latency", "jitter"):
            value = options.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{where}: {key}={value!r} must be a number of ms >= 0")
            values[key] = float(value)
        bandwidth = options.get("bandwidth")
        if bandwidth is not None and (
            isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth <= 0
        ):
            raise ConfigError(f"{where}: bandwidth={bandwidth!r} must be an integer KB/s > 0")
        if not (values["latency"] or values["jitter"] or bandwidth):
            raise ConfigError(f"{where}: give latency=, jitter= or bandwidth= (nothing to do)")
        return cls(target, values["latency"], values["jitter"], bandwidth)

    def describe(self) -> str:
        parts = []
        if self.latency or self.jitter:
            parts.append(f"+{self.latency:g} ms" + (f" ±{self.jitter:g}" if self.jitter else ""))
        if self.bandwidth:
            parts.append(f"{self.bandwidth} KB/s")
        return ", ".join(parts)


@dataclass(frozen=True)
class PartitionSpec:
    """Cut everything between two sites (direct traffic and links), and only that."""

    sites: tuple[str, str]

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        where: str = "partition",
    ) -> PartitionSpec:
        valid = tuple(sites)
        if options:
            raise ConfigError(f"{where}: takes no keywords, only two sites; {one_of(valid)}")
        if len(args) != 2:
            raise ConfigError(f"{where}: name the two sites to split apart; {one_of(valid)}")
        for site in args:
            if not isinstance(site, str) or site not in valid:
                raise unknown_name(where, "site", site, valid)
        if args[0] == args[1]:
            raise ConfigError(f"{where}: a partition is between two different sites")
        return cls((args[0], args[1]))

    def describe(self) -> str:
        return f"{self.sites[0]} | {self.sites[1]}"


@dataclass
class LinkFault:
    """A brownout or partition as applied: the timeline entry, and a context manager."""

    kind: str
    target: str
    detail: str
    proxies: list[str]
    test: str = ""
    started_wall: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    setup_ms: float = 0.0
    restored: float | None = None
    #: (proxy, toxic name) added by a brownout, removed by `lift()`.
    toxics: list[tuple[str, str]] = field(default_factory=list)
    #: How each part was applied, in order (a partition: the link cut, then the peer cut).
    steps: list[FaultTiming] = field(default_factory=list)
    undo: Callable[[LinkFault], None] | None = field(default=None, repr=False)

    @property
    def via(self) -> str:
        """The methods that ran, for the report: e.g. "blackhole + nftables"."""
        return " + ".join(f"{s.effect}: {s.method}" for s in self.steps) or "-"

    @property
    def active(self) -> bool:
        return self.restored is None

    def lift(self) -> None:
        """Undo the fault (idempotent)."""
        if self.restored is None and self.undo is not None:
            self.undo(self)
        if self.restored is None:
            self.restored = time.monotonic()

    def __enter__(self) -> LinkFault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lift()
