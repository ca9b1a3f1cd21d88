"""The running system under test: network, volumes and containers of a topology, in waves.

`System` is what the `dcfire_topology` fixture returns. It owns every Docker object it
creates (labelled with the session), starts independent services in parallel, gates each
wave on health checks, and removes everything at the end unless asked to keep it.
"""

from __future__ import annotations

import ipaddress
import random
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import docker.errors

from pytest_dcfire.errors import DcfireError, StartupError
from pytest_dcfire.runtime.clocks import environment as clock_environment
from pytest_dcfire.runtime.clocks import musl_loader
from pytest_dcfire.runtime.engine import L_ROLE, L_SESSION, L_SITE, Engine, SessionIdentity
from pytest_dcfire.runtime.handles import ServiceHandle
from pytest_dcfire.runtime.health import HealthResult, wait_healthy
from pytest_dcfire.runtime.images import ImageResolver, Progress
from pytest_dcfire.seams import Handle
from pytest_dcfire.topology.model import Service, Topology, Volume
from pytest_dcfire.topology.plan import BlastRadius, blast_radius, waves, with_adopted

#: Subnets are carved from this range, one /24 per session (and per xdist worker).
SUBNET_RANGE = ipaddress.IPv4Network("10.213.0.0/16")
#: Parallel engine calls when starting or removing a wave.
MAX_PARALLEL = 16


class VolumeProvider(Protocol):
    """Where a service instance's named volume lives: a site's storage pool."""

    def volume_for(self, service: Service, volume: Volume) -> str:
        """Create (once) and return the Docker volume name to mount."""
        ...

    def renew(self, service: Service) -> None:
        """Remove the volumes of `service`: the next `volume_for` makes them empty."""
        ...

    def close(self) -> None: ...


class Wiring(Protocol):
    """Service-to-service links: made once addresses are known, before any container."""

    def prepare(self, system: System, addresses: dict[str, str]) -> None: ...

    def resolve(self, service: Service) -> Service:
        """The service as it is started (its link placeholders replaced)."""
        ...


def dns_name(service: Service) -> str:
    """The instance's name on the topology network: `db`, or `api.ansan` for `api@ansan`."""
    return service.name.replace("@", ".")


def instance_environment(service: Service) -> dict[str, str]:
    """The container's environment: the topology's, plus `DCFIRE_SITE` and `DCFIRE_SERVICE`
    so that the instances of `site: [a, b]` (one image, one environment) know where they run."""
    return {"DCFIRE_SITE": service.site, "DCFIRE_SERVICE": service.name, **service.env}


class System:
    """The system under test, running (or about to run) on one Docker engine: what the
    `dcfire_topology` fixture returns (`from pytest_dcfire import System` to annotate it).

    `sites`, `services` (instances by name), `service(name)` and `in_site(site)` give
    `ServiceHandle`s; `blast_radius(site)` says what a fire there takes down;
    `adopt(container, site=...)` and `release(handle)` add and forget containers started
    elsewhere.
    """

    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        volumes: VolumeProvider,
        progress: Progress,
        keep: bool = False,
        wiring: Wiring | None = None,
        verbose: bool = False,
        clocks: Any = None,
    ) -> None:
        self.engine = engine
        #: The clock volume (faults/clock.py) when a service has `clock: controllable`.
        self.clocks = clocks
        self.verbose = verbose
        self._wiring = wiring
        self.topology = topology
        self.keep = keep
        self._volumes = volumes
        self._progress = progress
        self._handles: dict[str, ServiceHandle] = {}
        self.network: Any = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.health: dict[str, HealthResult] = {}
        #: Seconds from the first container created to every instance healthy (images
        #: excluded: a build is paid once, not by every session).
        self.start_seconds: float = 0.0
        #: Seconds spent finding or building the images first.
        self.image_seconds: float = 0.0
        self._stopped = False
        #: Adopts containers the plugin did not start (runtime/adopt.py; set by the session).
        self.adopter: Any = None
        #: The session that owns the containers: ours, or the shared one we attached to.
        self.owner: SessionIdentity = engine.session
        self.attached = False

    @classmethod
    def attach(
        cls,
        engine: Engine,
        topology: Topology,
        progress: Progress,
        owner: SessionIdentity,
        network: str,
        subnet: str,
        members: Mapping[str, tuple[str, str]],
    ) -> System:
        """A system another process started and owns (`dcfire_share = session`): handles
        for its containers (`members`: instance name → (container id, ip)), nothing
        created; `stop()` leaves it all in place."""
        system = cls(engine, topology, _NoVolumes(), progress)
        system.owner, system.attached = owner, True
        system.network = engine.client.networks.get(network)
        system.subnet = ipaddress.IPv4Network(subnet)
        for spec in topology.services:
            cid, ip = members[spec.name]
            container = engine.client.containers.get(cid)
            system._handles[spec.name] = ServiceHandle(
                spec, container, ip, engine.local, engine.host_address, topology.source
            )
        return system

    @classmethod
    def resume(
        cls,
        engine: Engine,
        topology: Topology,
        volumes: VolumeProvider,
        progress: Progress,
        network: Any,
        containers: Mapping[str, Any],
        wiring: Wiring | None = None,
    ) -> System:
        """A kept system this session takes over (--dcfire-reuse): handles for its running
        `containers` (instance name → SDK container); it is this session's from now on."""
        system = cls(engine, topology, volumes, progress, wiring=wiring)
        system.network = network
        config = (network.attrs.get("IPAM") or {}).get("Config") or [{}]
        system.subnet = ipaddress.IPv4Network(config[0].get("Subnet", "0.0.0.0/32"))
        for spec in topology.services:
            container = containers[spec.name]
            ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
            system._handles[spec.name] = ServiceHandle(
                spec, container, str(ip), engine.local, engine.host_address, topology.source
            )
        return system

    # -- what tests see -------------------------------------------------------------------

    @property
    def sites(self) -> tuple[str, ...]:
        return self.topology.site_names

    @property
    def services(self) -> Mapping[str, ServiceHandle]:
        """Running instances by name (`db`, `api@ansan`), in topology order."""
        return dict(self._handles)

    def service(self, name: str) -> ServiceHandle:
        try:
            return self._handles[name]
        except KeyError:
            self.topology.service(name)  # raises the did-you-mean error for unknown names
            raise DcfireError(f"service {name} is not running") from None

    def in_site(self, site: str) -> list[ServiceHandle]:
        self.topology.site(site)
        return [h for h in self._handles.values() if h.site == site]

    def adopt(
        self,
        container: Any,
        site: str,
        name: str | None = None,
        healthcheck: Any = None,
        depends_on: Any = None,
        timeout: float | None = None,
    ) -> ServiceHandle:
        """Make a container this plugin did not start a member of `site` (never removed),
        once its health check passes within `timeout` s (default: the recovery timeout).
        `depends_on` (default: its `dcfire.depends_on` label) feeds the blast radius."""
        if self.adopter is None:
            raise DcfireError("adopt: the system is not up yet")
        handle: ServiceHandle = self.adopter.adopt(
            container, site, name, healthcheck, depends_on=depends_on, timeout=timeout
        )
        return handle

    def release(self, member: Any) -> None:
        """Forget an adopted container, e.g. before the fixture that started it removes it."""
        if self.adopter is not None:
            self.adopter.release(member)

    def join(self, handle: ServiceHandle) -> None:
        self._handles[handle.name] = handle

    def leave(self, name: str) -> None:
        self._handles.pop(name, None)

    def blast_radius(self, site: str) -> BlastRadius:
        """What a fire in `site` takes down, adopted members (and their dependencies) too."""
        adopted = (h.spec for h in self._handles.values() if h.adopted)
        return blast_radius(with_adopted(self.topology, adopted), site)

    def __iter__(self) -> Iterator[ServiceHandle]:
        return iter(list(self._handles.values()))

    def __repr__(self) -> str:
        return f"<System {self.topology.source} sites={list(self.sites)} session={self.session_id}>"

    @property
    def session_id(self) -> str:
        """The session whose labels the service containers carry."""
        return self.owner.id

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the network, volumes and containers, wave by wave, each wave health-gated."""
        started = time.monotonic()
        try:
            self._create_network()
            if self.clocks is not None:
                self.clocks.start()
            resolver = ImageResolver(self.engine, self._progress, verbose=self.verbose)
            images = resolver.resolve(self.topology.services)
            self.image_seconds = time.monotonic() - started
            started = time.monotonic()
            addresses = self._addresses()
            if self._wiring is not None:
                self._wiring.prepare(self, addresses)
            plan = waves(self.topology)
            for number, wave in enumerate(plan, 1):
                names = ", ".join(s.name for s in wave)
                self._progress(f"starting wave {number}/{len(plan)}: {names}")
                handles = self._parallel(
                    lambda svc: self._start_one(svc, images[svc.name], addresses[svc.name]), wave
                )
                self._handles.update({h.name: h for h in handles})
                for result in self._parallel(self._wait_one, handles):
                    self.health[result.service] = result
        except BaseException:
            if not self.keep:
                self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        if self.topology.services:  # a system of adopted containers only starts nothing
            built = f"; images built first in {self.image_seconds:.1f} s" if resolver.built else ""
            self._progress(
                f"{len(self._handles)} service instance(s) healthy in {self.start_seconds:.1f} s"
                + built
            )

    def reset(self, name: str) -> list[ServiceHandle]:
        """Recreate the instances of service or site `name` from scratch: their containers
        and their volumes (empty again), at the same addresses; wait until they are healthy.
        Returns the new handles (the old ones are stale)."""
        if self.attached:
            raise DcfireError(f"reset({name!r}): the shared copy belongs to the xdist controller")
        if name in self.sites:
            handles = [h for h in self._handles.values() if h.site == name and not h.adopted]
        else:
            self.service(name)  # did-you-mean for unknown names
            handles = [h for h in self._handles.values() if name in (h.name, h.spec.base)]
        if any(h.adopted for h in handles):
            raise DcfireError(f"reset({name!r}): adopted containers are never re-created")
        images = ImageResolver(self.engine, self._progress).resolve(h.spec for h in handles)
        for handle in handles:
            _remove_container(handle.container)
            self._volumes.renew(handle.spec)
        fresh = self._parallel(lambda h: self._start_one(h.spec, images[h.name], h.ip), handles)
        for old, new in zip(handles, fresh, strict=True):
            new.route_through(old.router)
            self._handles[new.name] = new
        self._parallel(self._wait_one, fresh)
        return fresh

    def wait_healthy(
        self, handles: Sequence[Handle], timeout: float | None = None
    ) -> list[HealthResult]:
        """Health-gate `handles` again (after a restore), all at once; `timeout`: seconds
        instead of each health check's own budget."""
        if timeout is not None:
            return self._parallel(lambda h: wait_healthy(h, timeout, self._progress), handles)
        return self._parallel(self._wait_one, handles)

    def _wait_one(self, handle: Handle) -> HealthResult:
        """One health wait; a health port refused for a while is said on a progress line."""
        assert isinstance(handle, ServiceHandle), handle  # one of ours (`in_site`)
        return wait_healthy(handle, notice=self._progress)

    def stop(self) -> list[str]:
        """Remove everything this system created; return the problems met (never raises)."""
        if self._stopped or self.attached:
            return []
        self._stopped = True
        problems: list[str] = []
        containers = [c for c in self.engine.owned("containers") if _role(c) == "service"]
        for error in self._parallel(_remove_container, containers, swallow=True):
            if error:
                problems.append(error)
        try:
            self._volumes.close()
        except Exception as exc:
            problems.append(f"volumes: {exc}")
        if self.clocks is not None:
            problems += self.clocks.close()
        if self.network is not None:
            try:
                self.network.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                problems.append(f"network {self.network.name}: {exc}")
        return problems

    def keep_instructions(self) -> str:
        label = f"{L_SESSION}={self.session_id}"
        return (
            f"kept the system of session {self.session_id}; remove it with:\n"
            f"  docker rm -f $(docker ps -aq --filter label={label})\n"
            f"  docker volume rm $(docker volume ls -q --filter label={label})\n"
            f"  docker network rm $(docker network ls -q --filter label={label})\n"
            "(or run pytest again without --dcfire-keep after this process has exited: "
            "the next session removes what dead sessions left)"
        )

    # -- internals ------------------------------------------------------------------------

    def _create_network(self) -> None:
        taken = _subnets_in_use(self.engine)
        candidates = list(SUBNET_RANGE.subnets(new_prefix=24))
        random.shuffle(candidates)
        last: Exception | None = None
        for subnet in candidates:
            if any(subnet.overlaps(other) for other in taken):
                continue
            pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
            try:
                self.network = self.engine.client.networks.create(
                    self.engine.session.name("net"),
                    driver="bridge",
                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                    labels=self.engine.session.labels("network"),
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if "overlap" in str(exc).lower() or "already exists" in str(exc).lower():
                    last = exc
                    continue
                raise StartupError(f"cannot create the topology network: {exc}") from None
            self.subnet = subnet
            return
        raise StartupError(f"no free /24 subnet left in {SUBNET_RANGE}: {last}")

    def _addresses(self) -> dict[str, str]:
        assert self.subnet is not None
        hosts = list(self.subnet.hosts())[1:]  # .1 is the gateway
        if len(self.topology.services) > len(hosts):
            raise StartupError(f"more than {len(hosts)} service instances in one topology")
        return {s.name: str(ip) for s, ip in zip(self.topology.services, hosts, strict=False)}

    def _start_one(self, spec: Service, image: str, ip: str) -> ServiceHandle:
        api = self.engine.client.api
        svc = self._wiring.resolve(spec) if self._wiring is not None else spec
        binds = {
            self._volumes.volume_for(svc, vol): {"bind": vol.mount, "mode": "rw"}
            for vol in svc.volumes
        }
        environment = instance_environment(svc)
        if svc.clock == "controllable":
            if self.clocks is None:
                raise StartupError(f"service {svc.name}: clock: controllable, but no clock volume")
            binds.update(self.clocks.binds())
            environment.update(clock_environment(svc.name))
        local = self.engine.local
        port_bindings = {p: ("0.0.0.0", None) for p in svc.ports} if not local else None
        host_config = api.create_host_config(
            binds=binds or None, port_bindings=port_bindings, init=True
        )
        aliases = [dns_name(svc)] + ([svc.base] if svc.base != dns_name(svc) else [])
        net_name = self.network.name
        networking = api.create_networking_config(
            {net_name: api.create_endpoint_config(ipv4_address=ip, aliases=aliases)}
        )
        labels = self.engine.session.labels(
            "service", site=svc.site, service=svc.name, base=svc.base
        )
        try:
            created = self.engine.retry(
                lambda: api.create_container(
                    image,
                    command=list(svc.command) if svc.command is not None else None,
                    entrypoint=list(svc.entrypoint) if svc.entrypoint is not None else None,
                    environment=environment,
                    name=self.engine.session.name(svc.name),
                    hostname=dns_name(svc).replace(".", "-"),
                    labels=labels,
                    ports=list(svc.ports) if not local and svc.ports else None,
                    host_config=host_config,
                    networking_config=networking,
                    detach=True,
                )
            )
            if svc.clock == "controllable":
                self._check_clock_loader(svc, image, created["Id"])
            self.engine.retry(lambda: api.start(created["Id"]))
        except docker.errors.APIError as exc:
            shown = " ".join(shlex.quote(a) for a in (svc.command or ()))
            raise StartupError(
                f"service {svc.name} (site {svc.site}, image {image}"
                + (f", command {shown}" if shown else "")
                + f") could not start: {exc.explanation or exc}"
            ) from None
        container = self.engine.client.containers.get(created["Id"])
        return ServiceHandle(
            spec, container, ip, local, self.engine.host_address, self.topology.source
        )

    def _check_clock_loader(self, svc: Service, image: str, container_id: str) -> None:
        """A musl image (Alpine) cannot load Debian's libfaketime: say so before it starts."""
        loader = musl_loader(self.engine.client.api, container_id)
        if loader is not None:
            _remove_container(self.engine.client.containers.get(container_id))
            raise StartupError(
                f"{self.topology.source}: services.{svc.base}.clock: controllable needs a glibc "
                f"image, but {image} is musl-based ({loader}): libfaketime cannot be loaded "
                "there. Use a Debian/Ubuntu-based image, or set `clock: host` for it"
            )

    def _parallel(
        self, fn: Callable[[Any], Any], items: Sequence[Any], swallow: bool = False
    ) -> list[Any]:
        if not items:
            return []
        if len(items) == 1:
            return [fn(items[0])]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            results, first_error = [], None
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as exc:
                    if swallow:
                        results.append(str(exc))
                    elif first_error is None:
                        first_error = exc
            if first_error is not None:
                raise first_error
            return results


class _NoVolumes:
    """An attached system makes no volumes (its owner made them on its pools)."""

    def volume_for(self, service: Service, volume: Volume) -> str:
        raise StartupError("an attached system starts no container")

    def renew(self, service: Service) -> None:
        raise StartupError("an attached system re-creates no volume")

    def close(self) -> None:
        pass


def _role(container: Any) -> str:
    return str((container.labels or {}).get(L_ROLE, ""))


def _remove_container(container: Any) -> str | None:
    try:
        container.remove(force=True, v=False)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        return f"container {container.name}: {exc}"
    return None


def _subnets_in_use(engine: Engine) -> list[ipaddress.IPv4Network]:
    taken: list[ipaddress.IPv4Network] = []
    for net in engine.client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                found = ipaddress.ip_network(cfg.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            if isinstance(found, ipaddress.IPv4Network):
                taken.append(found)
    return taken


__all__ = ["L_SITE", "System", "VolumeProvider", "dns_name"]
