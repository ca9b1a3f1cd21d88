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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from pytest_dcfire.errors import ConfigError, DcfireError, did_you_mean
from pytest_dcfire.runtime.engine import L_SESSION
from pytest_dcfire.runtime.handles import ServiceHandle
from pytest_dcfire.topology.model import NAME_PATTERN, HealthCheck, Service, Site, Topology

INI_ADOPT_COMPOSE = "dcfire_adopt_compose"
OPTION_ADOPT_COMPOSE = "--dcfire-adopt-compose"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
#: Service label naming the site of a compose service (`labels: {dcfire.site: pangyo}`).
SITE_LABEL = "dcfire.site"
#: Optional service label with a health check, as in a topology file: `tcp:5432`,
#: `http:/health:8080` or `cmd:pg_isready -q`.
HEALTH_LABEL = "dcfire.healthcheck"
#: Method shown in the fire table when a fire meets the storage of adopted containers.
STORAGE_NOT_OURS = "not ours, skipped"


def add_options(group: Any, parser: Any) -> None:
    group.addoption(
        OPTION_ADOPT_COMPOSE,
        dest="dcfire_adopt_compose",
        metavar="PROJECT",
        help="adopt every running container of compose project PROJECT, each in the site "
        f"named by its service label {SITE_LABEL} (ini: {INI_ADOPT_COMPOSE}).",
    )
    parser.addini(
        INI_ADOPT_COMPOSE,
        "name of a running compose project whose containers are adopted (sites from the "
        f"{SITE_LABEL} service label); no topology file is needed.",
    )


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


def _ip(info: Mapping[str, Any]) -> str:
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    for cfg in nets.values():
        if cfg.get("IPAddress"):
            return str(cfg["IPAddress"])
    return ""


class Adoptions:
    """The session's adopted containers: `adopt`, `release`; wired by the session."""

    def __init__(self, engine: Any, system: Any, targets: Any, progress: Callable[[str], None]):
        self.engine = engine
        self.system = system
        self.targets = targets
        self.progress = progress
        #: Called with each new handle (the suite burn darkens it if its site burns).
        self.on_join: list[Callable[[ServiceHandle], None]] = []
        self._lock = threading.Lock()

    def adopt(
        self,
        container: Any,
        site: str,
        name: str | None = None,
        healthcheck: Any = None,
    ) -> ServiceHandle:
        """Make `container` (SDK object or id) a member of `site`; return its handle."""
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
        check = parse_healthcheck(healthcheck, f"dcfire_topology.adopt({name!r})")
        spec = Service(name=name, base=name, site=site, healthcheck=check)
        handle = ServiceHandle(
            spec,
            self.engine.client.containers.get(full),
            _ip(info),
            self.engine.local,
            self.engine.host_address,
        )
        handle.adopted = True
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


@dataclass
class ComposeProject:
    """A running compose project as found before the session: its members and sites."""

    name: str
    members: list[ComposeMember] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({m.site for m in self.members}))

    def header(self) -> list[str]:
        lines = [
            f"dcfire: adopted compose project {self.name}: "
            + ", ".join(f"{m.name}@{m.site}" for m in self.members)
        ]
        if self.outside:
            lines.append(
                f"dcfire: not in any site (no {SITE_LABEL} label, never burned): "
                + ", ".join(self.outside)
            )
        return lines

    def plan_lines(self) -> list[str]:
        """For --dcfire-plan: which running containers each site adopts (none is started)."""
        lines = [f"adopted from compose project {self.name} (burned, never removed):"]
        for site in self.sites:
            names = ", ".join(m.name for m in self.members if m.site == site)
            lines.append(f"  {site}: {names}")
        if self.outside:
            lines.append(f"  not in any site (never burned): {', '.join(self.outside)}")
        return lines

    def topology(self, base: Topology | None) -> Topology:
        """The sites to validate markers against: the file's, or the labels' alone."""
        if base is not None:
            unknown = sorted(set(self.sites) - set(base.site_names))
            if unknown:
                raise ConfigError(
                    f"{INI_ADOPT_COMPOSE} = {self.name}: label {SITE_LABEL}={unknown[0]} names "
                    f"no site of {base.source}; valid sites: {', '.join(base.site_names)}"
                )
            return base
        return Topology(
            source=f"compose project {self.name} (adopted)",
            sites=tuple(Site(s) for s in self.sites),
            services=(),
        )

    def adopt_into(self, adoptions: Adoptions) -> None:
        for m in self.members:
            adoptions.adopt(m.id, m.site, name=m.name, healthcheck=m.healthcheck)


def find_compose_project(client: Any, project: str, where: str) -> ComposeProject:
    """Read the running containers of `project` and their site labels (one engine call)."""
    project = project.strip()
    found = client.containers.list(filters={"label": f"{COMPOSE_PROJECT}={project}"})
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
        result.members.append(ComposeMember(c.id, name, site, check))
    if not result.members:
        raise ConfigError(
            f"{where} = {project}: no service of the project has a {SITE_LABEL} label; add "
            f"`labels: {{{SITE_LABEL}: SITE}}` to each service that lives in a site "
            f"(services found: {', '.join(sorted(per_service))})"
        )
    return result


def discover_compose(project: str, where: str) -> ComposeProject:
    """Connect to the engine (DOCKER_HOST) just long enough to read the project."""
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
