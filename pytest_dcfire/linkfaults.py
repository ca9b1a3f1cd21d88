"""Link faults: what a brownout or a partition between two sites asks for, and its record.

A fire takes a whole site down; a link fault degrades or cuts only what joins sites: a
*brownout* adds latency, jitter and a bandwidth limit to every link that touches a site (or
one service), the way a failing WAN line looks before it dies; a *partition* cuts everything
between two sites (their containers' direct traffic and the links between them), each site
staying up and reachable from everywhere else (split brain). Specs are validated the same
way for the `dcfire` fixture and for the markers `@brownout(...)`, `@partition(...)` and
`@flaky(...)`. A partition may be one-way (the asymmetric cut that confuses failure
detectors) or between groups of sites; a flaky target loses a share of its packets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_dcfire.errors import ConfigError, check_keywords, one_of, one_target, unknown_name
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
        target = one_target(
            where,
            args,
            options,
            BROWNOUT_KEYWORDS,
            valid,
            "name one site or service to brown out",
            "site or service",
        )
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
    """Cut everything between groups of sites (direct traffic and links), and only that.

    Each positional argument is a group: a site, or a list of sites (`partition(["pangyo",
    "ansan"], "gasan")`: a majority and a minority). `one_way=True` (two groups): only what
    the first sends to the second vanishes; the other way everything passes."""

    groups: tuple[tuple[str, ...], ...]
    one_way: bool = False

    def __post_init__(self) -> None:
        # `PartitionSpec(("a", "b"))`: a bare site is a group of one.
        groups = tuple((g,) if isinstance(g, str) else tuple(g) for g in self.groups)
        object.__setattr__(self, "groups", groups)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(s for group in self.groups for s in group)

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        where: str = "partition",
    ) -> PartitionSpec:
        valid = tuple(sites)
        check_keywords(where, options, PARTITION_KEYWORDS)
        one_way = options.get("one_way", False)
        if not isinstance(one_way, bool):
            raise ConfigError(f"{where}: one_way={one_way!r} must be True or False")
        if len(args) < 2:
            raise ConfigError(
                f"{where}: name the two sites (or groups of sites, as lists) to split apart; "
                f"{one_of(valid)}"
            )
        groups: list[tuple[str, ...]] = []
        for arg in args:
            group = tuple(arg) if isinstance(arg, (list, tuple)) else (arg,)
            if not group:
                raise ConfigError(f"{where}: an empty group of sites; {one_of(valid)}")
            for site in group:
                if not isinstance(site, str) or site not in valid:
                    raise unknown_name(where, "site", site, valid)
            groups.append(group)
        seen: set[str] = set()
        for group in groups:
            for site in group:
                if site in seen:
                    raise ConfigError(
                        f"{where}: site {site!r} is in two groups; a partition is between "
                        "different sites"
                    )
                seen.add(site)
        if one_way and len(groups) != 2:
            raise ConfigError(
                f"{where}: one_way=True needs exactly two sites or groups (from, to), "
                f"got {len(groups)}"
            )
        return cls(tuple(groups), one_way)

    def describe(self) -> str:
        return (" -> " if self.one_way else " | ").join("+".join(g) for g in self.groups)


PARTITION_KEYWORDS = ("one_way",)
FLAKY_KEYWORDS = ("loss",)


@dataclass(frozen=True)
class FlakySpec:
    """Drop a share (`loss`, 0 < loss <= 1, in whole percent) of the packets to and from a
    site's or a service's containers, at random, each packet on its own."""

    target: str
    loss: float

    @property
    def percent(self) -> int:
        return round(self.loss * 100)

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        services: Iterable[str],
        where: str = "flaky",
    ) -> FlakySpec:
        valid = tuple(dict.fromkeys((*sites, *services)))
        target = one_target(
            where,
            args,
            options,
            FLAKY_KEYWORDS,
            valid,
            "name one site or service to make flaky",
            "site or service",
        )
        if "loss" not in options:
            raise ConfigError(f"{where}: give loss= (the share of packets lost, e.g. loss=0.2)")
        loss = options["loss"]
        if (
            isinstance(loss, bool)
            or not isinstance(loss, (int, float))
            or not 0.01 <= loss <= 1
            or round(loss * 100) != round(loss * 100, 6)
        ):
            raise ConfigError(
                f"{where}: loss={loss!r} must be a share of packets from 0.01 to 1 in whole "
                "percent (e.g. 0.2)"
            )
        return cls(target, float(loss))

    def describe(self) -> str:
        return f"{self.percent}% loss"


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
