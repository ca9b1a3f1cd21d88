"""The description of a multi-site system: immutable, loaded once, shared by every layer.

A `Service` here is one *instance*: `site: [a, b]` in a topology file yields `svc@a` and
`svc@b`, each with `base == "svc"`. The running state lives in `pytest_dcfire.runtime`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pytest_dcfire.errors import UnknownName, did_you_mean, one_of

#: Names of sites, services and volumes end up in container names, labels and helper
#: commands; this keeps them boring (no shell or path metacharacters, no leading dash).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")

HealthKind = Literal["tcp", "cmd", "http"]

DEFAULT_POOL_MB = 256

#: `clock:` values: `host` (the default: the host's clock, untouched) or `controllable`
#: (libfaketime preloaded, so that `dcfire.clock` can move what its processes read).
CLOCK_MODES = ("host", "controllable")


@dataclass(frozen=True)
class HealthCheck:
    """How to tell that a service instance is ready (and recovered after a restore)."""

    kind: HealthKind
    port: int | None = None
    cmd: tuple[str, ...] = ()
    path: str = "/"
    #: Seconds allowed, in all, for the service to become healthy after a start or a
    #: restore (`budget:` in a topology file; `timeout:` is its older name). Not a per-probe
    #: timeout: each tcp probe waits 1 s and each http probe 2 s at most.
    budget: float = 60.0
    #: Seconds between attempts.
    interval: float = 0.2

    @property
    def timeout(self) -> float:
        """The older name of `budget`."""
        return self.budget

    def describe(self) -> str:
        if self.kind == "tcp":
            return f"tcp port {self.port}"
        if self.kind == "http":
            return f"http GET :{self.port}{self.path}"
        return "cmd " + " ".join(self.cmd)


@dataclass(frozen=True)
class Build:
    """A `build:` context, resolved to an absolute directory."""

    context: str
    dockerfile: str | None = None
    args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Volume:
    """A named volume, kept on its site's storage pool and mounted at `mount`."""

    name: str
    mount: str


@dataclass(frozen=True)
class Site:
    """A data center: a failure domain with its own network cut and storage pool."""

    name: str
    #: Size of each volume's loop-backed filesystem in this site, in MiB.
    storage_mb: int = DEFAULT_POOL_MB


@dataclass(frozen=True)
class Service:
    """One service instance, living in exactly one site."""

    name: str
    base: str
    site: str
    image: str | None = None
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    volumes: tuple[Volume, ...] = ()
    #: Names of services (any instance satisfies) or of instances (`svc@site`).
    depends_on: tuple[str, ...] = ()
    healthcheck: HealthCheck | None = None
    #: The entries of `depends_on` needed to start but not to keep running (`failover:
    #: true`): losing every instance of one, this instance fails over instead of going dark.
    failover: tuple[str, ...] = ()
    #: `controllable`: `dcfire.clock` may move its wall clock (libfaketime); `host`: never.
    clock: str = "host"

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)


@dataclass(frozen=True)
class Link:
    """A service-to-service path through a Toxiproxy proxy, asked for by a placeholder.

    `consumer` reaches `port` of the instance `target` through `${link:<ref>:<port>}`
    written in its environment, command or entrypoint; `ref` is the name as written
    (`db`, or `db@ansan`), resolved to one instance when the topology is loaded.
    """

    consumer: str
    ref: str
    target: str
    port: int


@dataclass(frozen=True)
class Latency:
    """One-way delay added to each direction of a link, in milliseconds."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms)


@dataclass(frozen=True)
class Wan:
    """WAN latency between sites: one default, overridden for pairs of sites."""

    default: Latency = Latency()
    pairs: tuple[tuple[frozenset[str], Latency], ...] = ()

    def between(self, a: str, b: str) -> Latency:
        """The latency of a link from site `a` to site `b` (none inside one site)."""
        if a == b:
            return Latency()
        for sites, latency in self.pairs:
            if sites == frozenset((a, b)):
                return latency
        return self.default


@dataclass(frozen=True)
class Topology:
    """Sites and service instances, as validated by `pytest_dcfire.topology.load`."""

    source: str
    sites: tuple[Site, ...]
    services: tuple[Service, ...]
    _by_name: Mapping[str, Service] = field(default_factory=dict, repr=False, compare=False)
    #: The optional project label of the file (`name:`), for people and reports.
    name: str | None = None
    #: Service-to-service links asked for by `${link:...}` placeholders.
    links: tuple[Link, ...] = ()
    wan: Wan = Wan()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.services})

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise UnknownName(
            f"unknown site {name!r}{did_you_mean(name, self.site_names)}; {one_of(self.site_names)}"
        )

    def service(self, name: str) -> Service:
        """The instance called `name` (`db`, `api@ansan`)."""
        try:
            return self._by_name[name]
        except KeyError:
            pass
        instances = [s.name for s in self.services if s.base == name]
        if instances:
            raise UnknownName(
                f"service {name!r} runs one instance per site: pick an instance: "
                f"{', '.join(instances)}"
            )
        names = list(dict.fromkeys([*self._by_name, *(s.base for s in self.services)]))
        raise UnknownName(
            f"unknown service {name!r}{did_you_mean(name, names)}; {one_of(self._by_name)}"
        )

    def instances_of(self, name: str) -> tuple[Service, ...]:
        """Every instance a dependency on `name` may use: all of a base, or one instance."""
        if name in self._by_name:
            return (self._by_name[name],)
        return tuple(s for s in self.services if s.base == name)

    def in_site(self, site: str) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.site == site)

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)
