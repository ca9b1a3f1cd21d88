"""What a topology implies before anything runs: start order, and what each fire takes down.

`waves()` is the order the runtime starts services in (each wave in parallel, health-gated).
`blast_radius()` answers the question Kakao never asked before 15 October 2022: when a site
burns, what goes dark with it, and what *elsewhere* stops working because every instance of
something it needs was in that site (transitively). A dependency declared `failover: true`
is needed to start, not to keep running: losing it, the dependent *fails over* (a claim a
drill should prove) instead of being stranded. `render_plan()` is `pytest --dcfire-plan`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.model import Service, Topology

__all__ = [
    "BlastRadius",
    "FailsOver",
    "SingleHomed",
    "Stranded",
    "blast_radius",
    "render_plan",
    "single_homed",
    "waves",
    "with_adopted",
]


def _dependencies(topology: Topology, service: Service) -> set[str]:
    """Instance names `service` waits for: every instance of each service it names."""
    return {
        instance.name
        for ref in service.depends_on
        for instance in topology.instances_of(ref)
        if instance.name != service.name
    }


def waves(topology: Topology) -> tuple[tuple[Service, ...], ...]:
    """Start order: each wave holds the instances whose dependencies are all in earlier waves.

    A dependency on `db` waits for every instance of db. Within a wave, instances keep the
    topology's order (file order, then site order), so the plan is deterministic.
    """
    needs = {service.name: _dependencies(topology, service) for service in topology.services}
    started: set[str] = set()
    remaining = list(topology.services)
    result: list[tuple[Service, ...]] = []
    while remaining:
        wave = tuple(service for service in remaining if needs[service.name] <= started)
        if not wave:  # only for hand-built topologies: the loader refuses cycles
            names = ", ".join(service.name for service in remaining)
            raise TopologyError(topology.source, "services", f"dependency cycle among {names}")
        result.append(wave)
        started.update(service.name for service in wave)
        remaining = [service for service in remaining if service.name not in started]
    return tuple(result)


@dataclass(frozen=True)
class Stranded:
    """An instance outside the burning sites that lost every instance of a dependency."""

    service: Service
    #: The dependency (as written in `depends_on`) with no working instance left.
    dependency: str
    #: Why: the dependency, what its surviving instances lost in turn, ..., down to the one
    #: whose instances all burn: `("api", "auth")` for "needs api, whose other instances
    #: need auth, every instance of which is in pangyo".
    chain: tuple[str, ...]
    #: The burning sites that hold every instance of `chain[-1]`.
    root_sites: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def root(self) -> str:
        return self.chain[-1]

    def reason(self) -> str:
        """`needs auth: every instance is in pangyo` (or the chain: `needs api -> auth: ...`)."""
        where = " or ".join(self.root_sites)
        if len(self.chain) == 1:
            what = f"it is in {where}" if "@" in self.root else f"every instance is in {where}"
            return f"needs {self.dependency}: {what}"
        what = (
            f"{self.root} is in {where}"
            if "@" in self.root
            else f"every instance of {self.root} is in {where}"
        )
        return f"needs {' -> '.join(self.chain)}: {what}"

    def describe(self) -> str:
        return f"{self.name} ({self.reason()})"


@dataclass(frozen=True)
class FailsOver(Stranded):
    """An instance outside the burning sites that lost every instance of a dependency it
    declared `failover: true`: it is expected to keep working, which a drill should prove."""

    def reason(self) -> str:
        return super().reason().replace("needs ", "loses ", 1) + "; failover declared"


@dataclass(frozen=True)
class BlastRadius:
    """What a fire in `sites` takes down: its own instances, and what they strand elsewhere."""

    sites: tuple[str, ...]
    #: Instances in the burning sites, in topology order.
    dark: tuple[Service, ...]
    #: Instances elsewhere that lost every instance of some dependency, in topology order.
    stranded: tuple[Stranded, ...]
    #: Instances elsewhere that keep everything they need.
    survivors: tuple[Service, ...]
    #: Survivors that lost a `failover: true` dependency: they must fail over.
    failing_over: tuple[FailsOver, ...] = ()

    @property
    def dark_names(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.dark)

    @property
    def stranded_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.stranded)

    @property
    def affected(self) -> tuple[str, ...]:
        """Every instance that stops working: dark, then stranded."""
        return self.dark_names + self.stranded_names

    def describe(self) -> list[str]:
        """The plan's lines for this fire (without the `if ... burns:` heading)."""
        dark = ", ".join(self.dark_names) or "nothing (no services in this site)"
        lines = [f"dark: {dark}"]
        if not self.stranded:
            lines.append("stranded elsewhere: none")
        head = "stranded elsewhere: "
        for index, entry in enumerate(self.stranded):
            lines.append((head if index == 0 else " " * len(head)) + entry.describe())
        head = "fails over: "
        for index, over in enumerate(self.failing_over):
            lines.append((head if index == 0 else " " * len(head)) + over.describe())
        return lines


def blast_radius(topology: Topology, *sites: str) -> BlastRadius:
    """What goes dark when `sites` burn (together), and what is stranded elsewhere.

    An instance is stranded when some dependency has no instance left that is neither dark
    nor stranded itself; this repeats until nothing changes, so stranding is transitive.
    Each stranded instance keeps the shortest explanation found.
    Raises KeyError (with did-you-mean) for an unknown site.
    """
    if not sites:
        raise ValueError("blast_radius needs at least one site")
    for site in sites:
        topology.site(site)
    burning = set(sites)
    order = {service.name: index for index, service in enumerate(topology.services)}
    site_order = {name: index for index, name in enumerate(topology.site_names)}
    dark = tuple(service for service in topology.services if service.site in burning)
    lost: dict[str, Stranded | None] = {service.name: None for service in dark}

    def lost_dependency(service: Service, ref: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(chain, root sites) if every instance of `ref` is lost, else ((), ())."""
        instances = topology.instances_of(ref)
        if not instances or any(instance.name not in lost for instance in instances):
            return (), ()
        inner = [lost[i.name] for i in instances if lost[i.name] is not None]
        shortest = min(inner, key=lambda s: len(s.chain) if s else 0, default=None)
        if shortest is not None:
            return (ref, *shortest.chain), shortest.root_sites
        return (ref,), tuple(sorted({i.site for i in instances}, key=site_order.__getitem__))

    while True:
        found: list[Stranded] = []
        for service in topology.services:
            if service.name in lost:
                continue
            best: Stranded | None = None
            for ref in service.depends_on:
                if ref in service.failover:
                    continue  # needed to start, not to keep running
                chain, roots = lost_dependency(service, ref)
                if chain and (best is None or len(chain) < len(best.chain)):
                    best = Stranded(service, ref, chain, roots)
            if best is not None:
                found.append(best)
        if not found:
            break
        lost.update({entry.name: entry for entry in found})
    stranded = sorted(
        (entry for entry in lost.values() if entry is not None), key=lambda s: order[s.name]
    )
    survivors = tuple(service for service in topology.services if service.name not in lost)
    failing_over = []
    for service in survivors:
        for ref in service.failover:
            chain, roots = lost_dependency(service, ref)
            if chain:
                failing_over.append(FailsOver(service, ref, chain, roots))
                break
    return BlastRadius(tuple(sites), dark, tuple(stranded), survivors, tuple(failing_over))


@dataclass(frozen=True)
class SingleHomed:
    """A dependency whose instances all live in one site, needed from another site."""

    dependency: str
    site: str
    needed_by: tuple[Service, ...]

    def describe(self) -> str:
        users = ", ".join(service.name for service in self.needed_by)
        return f"{self.dependency} (only in {self.site}; needed by {users})"


def single_homed(topology: Topology) -> tuple[SingleHomed, ...]:
    """Dependencies with every instance in one site that an instance elsewhere needs (to
    keep running: a `failover: true` dependency is not counted).

    These are what kept KakaoTalk down: a fire in that one site strands the others.
    """
    refs: list[str] = []
    for service in topology.services:
        refs.extend(ref for ref in service.depends_on if ref not in refs)

    def needs(service: Service, ref: str) -> bool:  # to keep running, not only to start
        return ref in service.depends_on and ref not in service.failover

    result: list[SingleHomed] = []
    for ref in refs:
        homes = {instance.site for instance in topology.instances_of(ref)}
        if len(homes) != 1:
            continue
        (home,) = homes
        users = tuple(s for s in topology.services if needs(s, ref) and s.site != home)
        if users:
            result.append(SingleHomed(ref, home, users))
    return tuple(result)


def _links(topology: Topology) -> list[str]:
    """The service-to-service links, with the WAN latency each one carries."""
    if not topology.links:
        return []
    site = {service.name: service.site for service in topology.services}
    lines = ["links (through Toxiproxy; cut by fires, partitions; slowed by brownouts):"]
    for link in topology.links:
        latency = topology.wan.between(site[link.consumer], site[link.target])
        wan = ""
        if latency:
            jitter = f" ±{latency.jitter_ms:g}" if latency.jitter_ms else ""
            wan = f" [WAN +{latency.latency_ms:g} ms{jitter} each way]"
        lines.append(f"  {link.consumer} -> {link.target}:{link.port}{wan}")
    return lines


def with_adopted(topology: Topology, adopted: Iterable[Service]) -> Topology:
    """`topology` plus adopted containers (never started by us) as members of their sites,
    so that the plan and the blast radius count them: `depends_on` links them to the rest."""
    extra = tuple(adopted)
    if not extra:
        return topology
    return replace(topology, services=topology.services + extra)


def render_plan(topology: Topology, adopted: Collection[str] = ()) -> str:
    """What `pytest --dcfire-plan` prints: sites, start waves, each site's fire, single homes.

    `adopted` names the members that run already (adopted, never started): they are shown in
    their site and counted in every blast radius, but in no start wave.
    """
    label = f" (project {topology.name})" if topology.name else ""
    started = tuple(s for s in topology.services if s.name not in adopted)
    taken = f", {len(topology.services) - len(started)} adopted" if adopted else ""
    lines = [
        f"topology: {topology.source}{label}: {len(topology.sites)} site(s), "
        f"{len(started)} service instance(s){taken}",
        "sites:",
    ]
    for site in topology.sites:
        members = topology.in_site(site.name)
        names = ", ".join(s.name + (" (adopted)" if s.name in adopted else "") for s in members)
        if not names:
            names = "(no services)" if topology.services else "(containers adopted at run time)"
        volumes = sum(len(service.volumes) for service in members)
        storage = (
            f" [{volumes} volume(s) on its storage, {site.storage_mb} MiB each]" if volumes else ""
        )
        lines.append(f"  {site.name}: {names}{storage}")
    if started:
        lines.append("start waves:")
        plan = waves(replace(topology, services=started, links=()))
        for number, wave in enumerate(plan, 1):
            lines.append(f"  {number}: {', '.join(service.name for service in wave)}")
    elif adopted:
        lines.append("start waves: none (every member is adopted: nothing is started)")
    lines.extend(_links(topology))
    if not topology.services:  # dcfire_sites alone: members join with dcfire_topology.adopt
        lines.append(
            "if a site burns: what was adopted into it goes dark (and what depends on it: "
            "dcfire_topology.blast_radius(site) once adopted)"
        )
        return "\n".join(lines) + "\n"
    for name in topology.site_names:
        lines.append(f"if {name} burns:")
        lines.extend(f"  {line}" for line in blast_radius(topology, name).describe())
    homes = single_homed(topology)
    if homes:
        lines.append("single-homed dependencies: " + "; ".join(home.describe() for home in homes))
    else:
        lines.append("no single-homed dependencies")
    return "\n".join(lines) + "\n"
