"""Adoption: containers the plugin did not start become members of a site.

`dcfire_topology.adopt(container, site=...)` takes a docker SDK container (for example the
one a testcontainers-python fixture started) or an id; `dcfire_adopt_compose = PROJECT`
adopts every running container of a compose project started before pytest, each in the
site named by its service's `dcfire.site` label.

Adoption is explicit and narrow:

- the container is verified through the engine *by id*, and only that id is added to the
  fault layer's allow-list (`Targets.adopt`); a look-alike container with the same name or
  labels stays refused;
- it is burned in every mode (network cut in its netns, power loss restarts the *same*
  container, freeze pauses it) and restored as it was found;
- it is never removed, renamed or re-created: session end and the reaper only remove what
  carries this session's labels, which Docker cannot add to an existing container;
- its storage is not ours: only the loop-backed pools the plugin made can be frozen, so a
  fire reports `not ours, skipped` for the storage of adopted containers.

Adopted members count in the plan, the header and `blast_radius` like started ones; their
dependencies come from `depends_on=` or the `dcfire.depends_on` label. `dcfire_sites` in the
ini file declares the sites when there is neither a topology file nor a compose project
(testcontainers or `docker run` containers adopted by fixtures).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_dcfire.config import INI_ADOPT_COMPOSE, INI_SITES, SITE_LABEL
from pytest_dcfire.errors import ConfigError, DcfireError, StartupError, did_you_mean
from pytest_dcfire.runtime.engine import L_SESSION
from pytest_dcfire.topology.model import NAME_PATTERN, HealthCheck, Service, Site, Topology
from pytest_dcfire.topology.plan import blast_radius, with_adopted

if TYPE_CHECKING:  # docker, handles and health load when a container is adopted
    from pytest_dcfire.runtime.engine import Engine
    from pytest_dcfire.runtime.handles import ServiceHandle
    from pytest_dcfire.runtime.system import System

COMPOSE_PROJECT = "com.docker.compose.project"


class AllowList(Protocol):
    """The fault layer's allow-list of containers it may touch (`faults.network.Targets`):
    an adopted container joins it, a released one leaves it."""

    def adopt(self, container: Any) -> None: ...

    def disown(self, cid: str) -> None: ...


COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
#: Optional service label with a health check, as in a topology file: `tcp:5432`,
#: `http:/health:8080` or `cmd:pg_isready -q`.
HEALTH_LABEL = "dcfire.healthcheck"
#: Optional label listing what a member needs (`cache`, `db@east`; commas or spaces), used
#: by the blast radius: `dcfire.depends_on: cache`.
DEPENDS_LABEL = "dcfire.depends_on"
#: Method shown in the fire table when a fire meets the storage of adopted containers.
STORAGE_NOT_OURS = "not ours, skipped"


def parse_healthcheck(value: Any, where: str) -> HealthCheck | None:
    """`None`, a HealthCheck, a topology-style mapping or a `kind:arg` label string."""
    if value is None or isinstance(value, HealthCheck):
        return value
    valid = "{'tcp': PORT}, {'http': PATH, 'port': PORT}, {'cmd': [ARGV]} or 'tcp:PORT'"
    if isinstance(value, str):
        kind, _, rest = value.strip().partition(":")
        if kind == "tcp":
            value = {"tcp": rest}
        elif kind == "http":
            path, _, port = rest.rpartition(":")
            value = {"http": path or "/", "port": port}
        elif kind == "cmd":
            value = {"cmd": rest.split()}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: healthcheck {value!r} is not valid; use {valid}")
    try:
        if "tcp" in value:
            return HealthCheck("tcp", port=int(value["tcp"]))
        if "http" in value:
            return HealthCheck("http", port=int(value["port"]), path=str(value["http"]))
        cmd = value.get("cmd")
        if cmd:
            argv = [cmd] if isinstance(cmd, str) else list(cmd)
            return HealthCheck("cmd", cmd=tuple(str(a) for a in argv))
    except (KeyError, TypeError, ValueError):
        pass
    raise ConfigError(f"{where}: healthcheck {dict(value)!r} is not valid; use {valid}")


def parse_depends(value: Any, where: str) -> tuple[str, ...]:
    """`cache, db@east` (or a list) -> ('cache', 'db@east'); names checked, not resolved."""
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(
            f"{where}: depends_on {value!r} is not valid; give member names, e.g. 'cache' or "
            "'cache, db@east'"
        )
    names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    for name in names:
        if not all(NAME_PATTERN.match(part) for part in name.split("@", 1)):
            raise ConfigError(
                f"{where}: depends_on {name!r} is not a member name (letters, digits, '.', "
                "'_', '-'; or svc@site)"
            )
    return names


def check_depends(
    member: str, depends: Sequence[str], known: Sequence[str], where: str, hint: str = ""
) -> None:
    """Every dependency names a member (or a service's instances) of the system."""
    for ref in depends:
        if ref == member:
            raise ConfigError(f"{where}: {member} cannot depend on itself ({DEPENDS_LABEL})")
        if ref not in known:
            raise ConfigError(
                f"{where}: depends_on {ref!r} names no member{did_you_mean(ref, known)}; "
                f"members: {', '.join(sorted(known)) or '(none yet)'}{hint}"
            )


def member_names(services: Sequence[Any]) -> list[str]:
    """What a dependency may name: instances (`api@east`) and services (`api`)."""
    specs = [getattr(s, "spec", s) for s in services]
    return list(dict.fromkeys([*(s.name for s in specs), *(s.base for s in specs)]))


def declared_sites(value: Sequence[str], where: str) -> tuple[str, ...]:
    """`dcfire_sites = east west` (spaces or commas), each a valid, distinct site name."""
    names = [n.strip() for item in value for n in str(item).split(",") if n.strip()]
    for name in names:
        if not NAME_PATTERN.match(name):
            raise ConfigError(
                f"{where} = {' '.join(value)}: {name!r} is not a valid site name (letters, "
                "digits, '.', '_', '-'; separate sites with spaces)"
            )
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{where} = {' '.join(value)}: site {twice!r} is named twice")
    return tuple(names)


def resolve_topology(
    topology: Topology | None,
    compose: ComposeProject | None,
    sites: Sequence[str],
    where: str = INI_SITES,
) -> Topology | None:
    """The sites markers are checked against: the topology file's, the compose labels' or
    `dcfire_sites`' (which the labels must then name). A file and `dcfire_sites` conflict."""
    declared = declared_sites(sites, where) if sites else ()
    if declared and topology is not None:
        raise ConfigError(
            f"{where} = {' '.join(sites)}: {topology.source} declares the sites already "
            f"({', '.join(topology.site_names)}); {INI_SITES} is for sessions without a topology "
            "file: remove one of the two"
        )
    if compose is not None:
        return compose.topology(topology, declared)
    if declared:
        return Topology(
            source=f"{where} (adopted containers only)",
            sites=tuple(Site(s) for s in declared),
            services=(),
        )
    return topology


class Adoptions:
    """The session's adopted containers: `adopt`, `release`; wired by the session."""

    def __init__(
        self,
        engine: Engine,
        system: System,
        targets: AllowList,
        progress: Callable[[str], None],
        health_timeout: float = 60.0,
    ):
        self.engine = engine
        self.system = system
        self.targets = targets
        self.progress = progress
        #: Seconds `adopt(..., healthcheck=...)` waits for health unless given `timeout=`.
        self.health_timeout = health_timeout
        #: Called with each new handle (the suite burn darkens it if its site burns).
        self.on_join: list[Callable[[ServiceHandle], None]] = []
        self._lock = threading.Lock()

    def adopt(
        self,
        container: Any,
        site: str,
        name: str | None = None,
        healthcheck: Any = None,
        depends_on: Any = None,
        timeout: float | None = None,
        _checked: bool = False,
        _dark: bool = False,
    ) -> ServiceHandle:
        """Make `container` (SDK object or id) a member of `site`, once its health check
        passes (within `timeout` seconds); return its handle. `_dark`: another process keeps
        it dark (the xdist controller's session burn), so no health check can pass now."""
        import docker.errors

        from pytest_dcfire.runtime.handles import ServiceHandle, container_ip
        from pytest_dcfire.runtime.health import wait_healthy

        raw = getattr(container, "id", container)
        if not isinstance(raw, str) or not raw:
            raise ConfigError(
                f"dcfire_topology.adopt: {container!r} is not a container; pass a docker SDK "
                "container (e.g. testcontainers' get_wrapped_container()) or a container id"
            )
        try:
            info = self.engine.retry(lambda: self.engine.client.api.inspect_container(raw))
        except docker.errors.NotFound:
            raise DcfireError(f"dcfire_topology.adopt: no container {raw[:64]!r}") from None
        full = str(info["Id"])
        shown = str(info.get("Name", "")).lstrip("/") or full[:12]
        labels = dict((info.get("Config") or {}).get("Labels") or {})
        owner = labels.get(L_SESSION)
        if owner:
            raise DcfireError(
                f"dcfire_topology.adopt: refusing {shown} ({full[:12]}): it was made by "
                f"pytest-dcfire session {owner} (its services are members already; a "
                "container of another session is not ours to burn)"
            )
        if not (info.get("State") or {}).get("Running"):
            raise DcfireError(
                f"dcfire_topology.adopt: {shown} is not running "
                f"({(info.get('State') or {}).get('Status')}); start it before adopting it"
            )
        sites = tuple(self.system.sites)
        if site not in sites:
            raise ConfigError(
                f"dcfire_topology.adopt({shown!r}, site=...): unknown site {site!r}"
                f"{did_you_mean(str(site), sites)}; valid sites: {', '.join(sites)}"
            )
        name = name or shown
        if not NAME_PATTERN.match(name):
            raise ConfigError(
                f"dcfire_topology.adopt: name {name!r} is not valid; use letters, digits, "
                "'.', '_', '-' (pass name=...)"
            )
        where = f"dcfire_topology.adopt({name!r})"
        check = parse_healthcheck(healthcheck, where)
        if depends_on is None:
            depends_on = labels.get(DEPENDS_LABEL)
            where = f"{where}: label {DEPENDS_LABEL}={depends_on}"
        depends = parse_depends(depends_on, where)
        if not _checked:
            hint = "; adopt the dependency first" if depends else ""
            known = member_names(list(self.system.services.values()))
            check_depends(name, depends, known, where, hint)
        base = labels.get(COMPOSE_SERVICE, name) if _checked else name
        spec = Service(name=name, base=base, site=site, healthcheck=check, depends_on=depends)
        handle = ServiceHandle(
            spec,
            self.engine.client.containers.get(full),
            container_ip(info),
            self.engine.local,
            self.engine.host_address,
        )
        handle.adopted = True
        if check is not None and not _dark:  # healthy before it is ours: no cold start on fire
            limit = timeout if timeout is not None else self.health_timeout
            try:
                wait_healthy(handle, limit)
            except StartupError as exc:
                raise DcfireError(
                    f"dcfire_topology.adopt({name!r}, site={site!r}): not adopted, its health "
                    f"check did not pass within {limit:g} s (pass timeout=... for a slower "
                    f"start): {exc}"
                ) from None
        with self._lock:
            existing = self.system.services.get(name)
            if existing is not None:
                if getattr(existing, "adopted", False) and existing.container.id == full:
                    same: ServiceHandle = existing
                    return same  # adopting twice is harmless
                raise ConfigError(
                    f"dcfire_topology.adopt: a member called {name!r} exists already; "
                    "pass another name=..."
                )
            self.targets.adopt(full)
            self.system.join(handle)
        self.progress(f"adopted {shown} ({full[:12]}) into site {site} as {name}")
        for callback in self.on_join:
            callback(handle)
        return handle

    def release(self, member: Any) -> None:
        """Forget an adopted container (before the fixture that started it removes it)."""
        name = getattr(member, "name", member)
        handle = self.system.services.get(name)
        if handle is None or not getattr(handle, "adopted", False):
            raise ConfigError(f"dcfire_topology.release: {name!r} is not an adopted container")
        self.system.leave(name)
        self.targets.disown(handle.container.id)


# -- compose projects -------------------------------------------------------------------


@dataclass
class ComposeMember:
    id: str
    name: str
    site: str
    healthcheck: HealthCheck | None = None
    #: The compose service (`api` for the members `api-1`, `api-2` of a scaled one).
    service: str = ""
    depends_on: tuple[str, ...] = ()
    #: The engine's state when the project was read: `running`, `exited`, `created`...
    state: str = "running"

    @property
    def spec(self) -> Service:
        """The member as a topology instance (for the plan and the blast radius)."""
        return Service(
            name=self.name,
            base=self.service or self.name,
            site=self.site,
            healthcheck=self.healthcheck,
            depends_on=self.depends_on,
        )

    def shown(self) -> str:
        return self.name + ("" if self.state == "running" else f" (not running: {self.state})")


@dataclass
class ComposeProject:
    """A running compose project as found before the session: its members and sites."""

    name: str
    members: list[ComposeMember] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({m.site for m in self.members}))

    def header(self, topology: Topology, burning: Sequence[str] = ()) -> list[str]:
        """Session header lines: each site's adopted members, and what a burn takes down."""
        per_site = [
            f"{site}: " + ", ".join(m.shown() for m in self.members if m.site == site)
            for site in topology.site_names
            if any(m.site == site for m in self.members)
        ]
        lines = [f"dcfire: adopted compose project {self.name}: " + "; ".join(per_site)]
        planned = self.planned(topology)
        for site in burning:
            radius = blast_radius(planned, site)
            lines.append(f"dcfire: {site} burning: " + "; ".join(radius.describe()))
        if self.outside:
            lines.append(
                f"dcfire: not in any site (no {SITE_LABEL} label, never burned): "
                + ", ".join(self.outside)
            )
        return lines

    def plan_lines(self) -> list[str]:
        """For --dcfire-plan, after the sites (which list the members): where they come from."""
        lines = [
            f"adopted from compose project {self.name} (burned, never removed; read from the "
            "engine, nothing changed)"
        ]
        stopped = [m.shown() for m in self.members if m.state != "running"]
        if stopped:
            lines.append(f"  not running (a session would refuse them): {', '.join(stopped)}")
        if self.outside:
            lines.append(f"  not in any site (never burned): {', '.join(self.outside)}")
        return lines

    def planned(self, topology: Topology) -> Topology:
        """`topology` with the members in their sites: what the plan and the header count."""
        return with_adopted(topology, (m.spec for m in self.members))

    def topology(self, base: Topology | None, declared: Sequence[str] = ()) -> Topology:
        """The sites to validate markers against: the file's, `dcfire_sites`' or the labels'
        alone; the labels must name sites declared elsewhere, and dependencies members."""
        valid = base.site_names if base is not None else tuple(declared)
        source = base.source if base is not None else INI_SITES
        unknown = sorted(set(self.sites) - set(valid)) if valid else []
        if unknown:
            member = next(m for m in self.members if m.site == unknown[0])
            raise ConfigError(
                f"{INI_ADOPT_COMPOSE} = {self.name}: service {member.service or member.name}: "
                f"label {SITE_LABEL}={unknown[0]} names no site of {source}"
                f"{did_you_mean(unknown[0], valid)}; valid sites: {', '.join(valid)}"
            )
        known = member_names([*(base.services if base is not None else ()), *self.members])
        for m in self.members:
            where = (
                f"{INI_ADOPT_COMPOSE} = {self.name}: service {m.service or m.name}: label "
                f"{DEPENDS_LABEL}={','.join(m.depends_on)}"
            )
            check_depends(m.name, m.depends_on, known, where)
        if base is not None:
            return base
        return Topology(
            source=f"compose project {self.name} (adopted)",
            sites=tuple(Site(s) for s in (declared or self.sites)),
            services=(),
        )

    def adopt_into(
        self, adoptions: Adoptions, dark: Callable[[ComposeMember], bool] = lambda m: False
    ) -> None:
        """Adopt every member; `dark(member)`: kept dark by the xdist controller's burn (a
        freeze pauses it: paused is running then, and no health check can pass yet)."""
        for m in self.members:
            held = dark(m)
            if m.state != "running" and not (held and m.state == "paused"):
                raise DcfireError(
                    f"{INI_ADOPT_COMPOSE} = {self.name}: service {m.service or m.name} (site "
                    f"{m.site}) is not running ({m.state}); start it before pytest: "
                    f"docker compose -p {self.name} up -d --wait"
                )
            adoptions.adopt(
                m.id,
                m.site,
                name=m.name,
                healthcheck=m.healthcheck,
                depends_on=m.depends_on,
                _checked=True,
                _dark=held,
            )


def find_compose_project(client: Any, project: str, where: str) -> ComposeProject:
    """Read the running containers of `project` and their site labels (one engine call)."""
    project = project.strip()
    # Stopped ones too: a stopped member is "not running", not a site that vanished.
    found = client.containers.list(all=True, filters={"label": f"{COMPOSE_PROJECT}={project}"})
    if not found:
        raise ConfigError(
            f"{where} = {project}: no running container of compose project {project!r}; "
            f"start it before pytest (docker-compose -p {project} up -d) and label each "
            f"service that lives in a site with {SITE_LABEL}: SITE"
        )
    result = ComposeProject(project)
    per_service: dict[str, int] = {}
    for c in found:
        per_service[c.labels.get(COMPOSE_SERVICE, c.name)] = (
            per_service.get(c.labels.get(COMPOSE_SERVICE, c.name), 0) + 1
        )
    for c in sorted(found, key=lambda c: (c.labels.get(COMPOSE_SERVICE, ""), c.name)):
        labels: Mapping[str, str] = c.labels or {}
        service = labels.get(COMPOSE_SERVICE, c.name)
        name = service
        if per_service[service] > 1:
            name = f"{service}-{labels.get(COMPOSE_NUMBER, c.short_id)}"
        site = labels.get(SITE_LABEL, "").strip()
        if not site:
            result.outside.append(name)
            continue
        if not NAME_PATTERN.match(site):
            raise ConfigError(
                f"{where} = {project}: service {service}: label {SITE_LABEL}={site!r} is not "
                "a valid site name (letters, digits, '.', '_', '-')"
            )
        check = parse_healthcheck(
            labels.get(HEALTH_LABEL), f"{where} = {project}: service {service}: {HEALTH_LABEL}"
        )
        depends = parse_depends(
            labels.get(DEPENDS_LABEL), f"{where} = {project}: service {service}: {DEPENDS_LABEL}"
        )
        state = str(getattr(c, "status", "running"))
        result.members.append(ComposeMember(c.id, name, site, check, service, depends, state))
    if not result.members:
        raise ConfigError(
            f"{where} = {project}: no service of the project has a {SITE_LABEL} label; add "
            f"`labels: {{{SITE_LABEL}: SITE}}` to each service that lives in a site "
            f"(services found: {', '.join(sorted(per_service))})"
        )
    return result


def discover_compose(project: str, where: str) -> ComposeProject:
    """Connect to the engine (DOCKER_HOST) just long enough to read the project."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=30)
    except docker.errors.DockerException as exc:
        raise ConfigError(f"{where} = {project}: no Docker engine: {exc}") from None
    try:
        return find_compose_project(client, project, where)
    except docker.errors.DockerException as exc:
        raise ConfigError(f"{where} = {project}: listing its containers failed: {exc}") from None
    finally:
        client.close()


def adopted(handles: Sequence[Any]) -> list[Any]:
    return [h for h in handles if getattr(h, "adopted", False)]
