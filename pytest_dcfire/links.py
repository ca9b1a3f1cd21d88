"""Links: the Toxiproxy proxies between the test process and every declared service port.

`service.address(port)` goes through one proxy per port, so a fire can cut the edge the way
a dead site looks to a client (connections hang; nothing is reset) and a brownout can add the
latency and bandwidth limits of a degraded WAN link. One client path serves every server mode
(embedded, image, url): toxiproxy-python, wrapped here and nowhere else, because it keeps
the server's address in class attributes that must be set under a lock before each call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tenacity import Retrying, stop_after_delay, wait_fixed

from pytest_dcfire.config import INI_TOXIPROXY, TOXIPROXY_FORMS, Settings
from pytest_dcfire.errors import ConfigError, DcfireError, FireError
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.linkfaults import BrownoutSpec, LinkFault, PartitionSpec
from pytest_dcfire.modes import Effect, ToxiproxyMode
from pytest_dcfire.seams import FaultSpec, Handle
from pytest_dcfire.steps import CallStep, Step
from pytest_dcfire.topology.model import Link, Service, Topology
from pytest_dcfire.topology.wiring import has_placeholder, substitute

if TYPE_CHECKING:
    from pytest_dcfire.runtime.engine import Engine
    from pytest_dcfire.runtime.handles import ServiceHandle
    from pytest_dcfire.runtime.system import System
    from pytest_dcfire.toxiproxy import EmbeddedToxiproxy

Progress = Callable[[str], None]

_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")
_CALL_LOCK = threading.Lock()
#: On a real Toxiproxy a blackhole is a `timeout` toxic with timeout 0 on both streams.
_CUT_TOXICS = ("dcfire_cut_up", "dcfire_cut_down")
#: Where Toxiproxy images (the official one, and ours) serve the API.
IMAGE_API_PORT = 8474


def proxy_name(session: str, service: str, port: int) -> str:
    """`<session>-<svc>-<port>`, with anything a URL path would mangle replaced by `_`."""
    return _NAME_OK.sub("_", f"{session}-{service}-{port}")


class LinkClient:
    """One Toxiproxy server's API, through toxiproxy-python (the only user of APIConsumer)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ConfigError(f"{INI_TOXIPROXY}: {url!r} has no host:port; use {TOXIPROXY_FORMS}")
        self.url = url
        self.host: str = parts.hostname
        self.port: int = parts.port
        self._embedded: bool | None = None

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        from toxiproxy.api import APIConsumer

        with _CALL_LOCK:
            APIConsumer.host, APIConsumer.port = self.host, self.port
            return fn(APIConsumer)

    def version(self) -> dict[str, Any]:
        """The server's `/version` (a JSON object on ours and on Toxiproxy >= 2.6)."""
        import json

        text = self._call(lambda api: api.get("/version", timeout=5).text)
        try:
            data = json.loads(text)
        except ValueError:
            data = {"version": text.strip()}
        return data if isinstance(data, dict) else {"version": str(data)}

    @property
    def embedded(self) -> bool:
        """Whether the server is ours (it then has the blackhole extension)."""
        if self._embedded is None:
            self._embedded = self.version().get("implementation") == "pytest-dcfire"
        return self._embedded

    def create(
        self, name: str, upstream: str, listen: str | None = None, port: int = 0
    ) -> tuple[str, int]:
        """Create a proxy on `port` (default: an ephemeral one) of `listen` (default:
        loopback for a local server, every address otherwise); return the host of this
        server and that port."""
        if listen is None:
            local = self.host in ("127.0.0.1", "localhost", "::1")
            listen = "127.0.0.1" if local else "0.0.0.0"
        listen = f"{listen}:{port}"
        info = self._call(
            lambda api: api.post(
                "/proxies", json={"name": name, "upstream": upstream, "listen": listen}, timeout=10
            ).json()
        )
        port = int(str(info["listen"]).rsplit(":", 1)[1])
        return (self.host, port)

    def destroy(self, name: str) -> None:
        from toxiproxy.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._call(lambda api: api.delete(f"/proxies/{name}", timeout=10))

    def proxies(self) -> dict[str, Any]:
        return dict(self._call(lambda api: api.get("/proxies", timeout=10).json()))

    def add_toxic(self, proxy: str, name: str, kind: str, stream: str, **attributes: Any) -> None:
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0}
        body["attributes"] = attributes
        self._call(lambda api: api.post(f"/proxies/{proxy}/toxics", json=body, timeout=10))

    def remove_toxic(self, proxy: str, name: str) -> None:
        from toxiproxy.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._call(lambda api: api.delete(f"/proxies/{proxy}/toxics/{name}", timeout=10))

    def cut(self, proxy: str) -> None:
        """Hang the proxy: held bytes on ours, timeout-0 toxics (dropped bytes) elsewhere."""
        if self.embedded:
            self._call(lambda api: api.post(f"/proxies/{proxy}", json={"blackhole": True}))
            return
        for name, stream in zip(_CUT_TOXICS, ("upstream", "downstream"), strict=True):
            self.add_toxic(proxy, name, "timeout", stream, timeout=0)

    def heal(self, proxy: str) -> None:
        if self.embedded:
            self._call(lambda api: api.post(f"/proxies/{proxy}", json={"blackhole": False}))
            return
        for name in _CUT_TOXICS:
            self.remove_toxic(proxy, name)


class Links:
    """The session's Toxiproxy server (or a client of one) and its proxies.

    Edge proxies (one per declared port) sit between the test process and the services;
    link proxies (one per `${link:...}` placeholder) between two services, with the WAN
    latency of their pair of sites. Fires cut both kinds where they touch a burning site.
    """

    def __init__(self, settings: Settings, session: str, progress: Progress) -> None:
        self.settings = settings
        self.session = session
        self.progress = progress
        self.server: EmbeddedToxiproxy | None = None
        self.client: LinkClient | None = None
        self.mode: ToxiproxyMode = settings.toxiproxy_mode
        self._rest = settings.toxiproxy.partition(":")[2]
        #: (service, port) -> (proxy name, client address)
        self.proxies: dict[tuple[str, int], tuple[str, tuple[str, int]]] = {}
        #: service-to-service links -> (proxy name, address the consumer uses)
        self.links: dict[Link, tuple[str, tuple[str, int]]] = {}
        self._site_of: dict[str, str] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._faults = 0
        self._container: Any = None  # the image mode's container (docker SDK)
        self._engine: Engine | None = None
        #: True when the proxies belong to another process (`dcfire_share = session`).
        self.attached = False

    def start(self) -> Links:
        """Start (embedded) or reach (url) the server; fail with the ini key named.

        In image mode the server is a container on the topology network, so it starts in
        `prepare()`, once that network exists.
        """
        if self.mode == "image":
            if not self._rest.strip():
                raise ConfigError(f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}: no image")
            return self
        if self.mode == "url":
            self.client = LinkClient(self._rest)
            try:
                self.client.version()
            except Exception as exc:
                raise ConfigError(
                    f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}: no Toxiproxy answers at "
                    f"{self._rest}/version ({type(exc).__name__}); start one there or use "
                    f"{TOXIPROXY_FORMS}"
                ) from None
            return self
        from pytest_dcfire.toxiproxy import EmbeddedToxiproxy

        self.server = EmbeddedToxiproxy().start()
        self.client = LinkClient(self.server.url)
        return self

    # -- wiring: before the services start ------------------------------------------------

    def prepare(self, system: System, addresses: dict[str, str]) -> None:
        """Start the image-mode server, then create the service-to-service link proxies.

        Called by `System.start()` once the network exists and addresses are assigned, and
        before any container is created, so placeholders can be replaced with the proxies.
        """
        topology = system.topology
        self._site_of = {s.name: s.site for s in topology.services}
        if self.mode == "image":
            self._start_image(system)
        if not topology.links:
            return
        for link in topology.links:
            self._make_link(system, link, f"{addresses[link.target]}:{link.port}")
        self.progress(f"{len(self.links)} service-to-service link(s) through Toxiproxy")

    def reopen(self, system: Any, ports: Sequence[int]) -> None:
        """The link proxies of a kept system (--dcfire-reuse), again on the ports its
        containers were started with (`ports`: in topology link order); ConfigError when a
        port is taken or the server is a container that went with the old session."""
        topology = system.topology
        self._site_of = {s.name: s.site for s in topology.services}
        if not topology.links:
            return
        if self.mode == "image":
            raise ConfigError(f"{INI_TOXIPROXY} = image: its link proxies are not kept")
        for link, port in zip(topology.links, ports, strict=True):
            target = system.service(link.target)
            self._make_link(system, link, f"{target.ip}:{link.port}", port)

    def link_ports(self, topology: Any) -> list[int]:
        """The port of each link proxy, in topology link order (for `reopen`)."""
        return [self.links[link][1][1] for link in topology.links]

    def _make_link(self, system: Any, link: Link, upstream: str, port: int = 0) -> None:
        client = self.client
        assert client is not None
        listen, advertise = self._link_endpoint(system)
        name = _NAME_OK.sub("_", f"{self.session}-{link.consumer}-to-{link.target}-{link.port}")
        client.destroy(name)
        try:
            _, made = client.create(name, upstream, listen=listen, port=port)
        except Exception as exc:
            if not port:
                raise
            raise ConfigError(f"link proxy {name} on port {port}: {_short(exc)}") from None
        self.links[link] = (name, (advertise, made))
        topology = system.topology
        latency = topology.wan.between(self._site_of[link.consumer], self._site_of[link.target])
        if latency:
            for stream in ("upstream", "downstream"):
                client.add_toxic(
                    name,
                    f"dcfire_wan_{stream}",
                    "latency",
                    stream,
                    latency=int(latency.latency_ms),
                    jitter=int(latency.jitter_ms),
                )

    def resolve(self, service: Service) -> Service:
        """The service with its `${link:...}` placeholders replaced by proxy addresses."""

        def address_of(ref: str, port: int) -> tuple[str, int]:
            for link, (_, address) in self.links.items():
                if link.consumer == service.name and link.ref == ref and link.port == port:
                    return address
            raise FireError(f"{service.name}: no link proxy for {ref}:{port}")  # pragma: no cover

        def sub(text: str) -> str:
            return substitute(text, address_of) if has_placeholder(text) else text

        def argv(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(sub(a) for a in values)

        return dataclasses.replace(
            service,
            environment=tuple((k, sub(v)) for k, v in service.environment),
            command=argv(service.command),
            entrypoint=argv(service.entrypoint),
        )

    def _link_endpoint(self, system: System) -> tuple[str, str]:
        """(listen host, host the containers dial) for link proxies in this server mode."""
        assert self.client is not None
        if self.mode == "image":
            return "0.0.0.0", self.client.host
        if self.client.host in ("127.0.0.1", "localhost", "::1"):
            if not system.engine.local:
                raise ConfigError(
                    f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}: service-to-service links "
                    "need a Toxiproxy the containers can reach, and this one runs beside the "
                    "tests while the engine is remote (DOCKER_HOST); use url:<http://host:port> "
                    "of a server on the engine's network"
                )
            assert system.subnet is not None  # made with the network, before the links
            gateway = str(system.subnet[1])  # this host, as the containers see it
            return gateway, gateway
        return "0.0.0.0", self.client.host

    def _start_image(self, system: System) -> None:
        """Run the Toxiproxy image on the topology network and wait for its API."""
        import docker.errors

        engine = system.engine
        ref = self._rest.strip()
        setting = f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}"
        if not engine.local:
            raise ConfigError(
                f"{setting}: image mode needs a local engine (the test process talks to the "
                "container's own address); with a remote DOCKER_HOST run the image there and "
                "use url:<http://host:port>"
            )
        try:
            engine.client.images.get(ref)
        except docker.errors.ImageNotFound:
            try:
                engine.client.images.pull(ref)
            except docker.errors.DockerException as exc:
                raise ConfigError(
                    f"{setting}: the image is not on the engine and pulling it failed "
                    f"({_short(exc)}); build it or `docker load` it first"
                ) from None
        assert system.subnet is not None
        ip = str(list(system.subnet.hosts())[-1])  # services take addresses from the bottom
        api = engine.client.api
        networking = api.create_networking_config(
            {system.network.name: api.create_endpoint_config(ipv4_address=ip)}
        )
        self._engine = engine
        try:
            created = api.create_container(
                ref,
                name=engine.session.name("toxiproxy"),
                labels=engine.session.labels("toxiproxy"),
                host_config=api.create_host_config(init=True),
                networking_config=networking,
                detach=True,
            )
            self._container = engine.client.containers.get(created["Id"])
            self._container.start()
        except docker.errors.APIError as exc:
            raise ConfigError(f"{setting}: the container could not start: {_short(exc)}") from None
        self.client = LinkClient(f"http://{ip}:{IMAGE_API_PORT}")
        try:
            for attempt in Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.1), reraise=True):
                with attempt:
                    self.client.version()
        except Exception as exc:
            logs = self._container.logs(tail=20).decode("utf-8", "replace")
            raise ConfigError(
                f"{setting}: no Toxiproxy API at {self.client.url} after 30 s "
                f"({type(exc).__name__}); the image must serve Toxiproxy's API on port "
                f"{IMAGE_API_PORT} of 0.0.0.0. Its last log lines:\n{logs}"
            ) from None
        self.progress(f"Toxiproxy {ref} running at {self.client.url}")

    # -- sharing one copy between xdist workers (`dcfire_share = session`) ---------------

    def describe(self, topology: Topology) -> dict[str, Any]:
        """Plain data for `attach_shared` in another process: the API url and every proxy."""
        assert self.client is not None
        order = list(topology.links)
        return {
            "url": self.client.url,
            "edge": [
                [svc, port, name, list(address)]
                for (svc, port), (name, address) in self.proxies.items()
            ],
            "links": [
                [order.index(link), name, list(address)]
                for link, (name, address) in self.links.items()
            ],
        }

    def attach_shared(self, described: dict[str, Any], system: System) -> Links:
        """Use the proxies another process made on its server (in url mode, whatever mode
        that server runs in); `close()` then leaves them and the server alone."""
        self.attached = True
        self.mode = "url"
        self.client = LinkClient(str(described["url"]))
        topology = system.topology
        self._site_of = {s.name: s.site for s in topology.services}
        for svc, port, name, address in described["edge"]:
            self.proxies[(str(svc), int(port))] = (str(name), (str(address[0]), int(address[1])))
        for index, name, address in described["links"]:
            link = topology.links[int(index)]
            self.links[link] = (str(name), (str(address[0]), int(address[1])))
        for handle in system.services.values():
            handle.route_through(self._route)
        return self

    # -- the edge: after the services start -----------------------------------------------

    def attach(self, system: System) -> None:
        """One proxy per declared port of every instance; route `address()` through them."""
        assert self.client is not None
        for handle in system.services.values():
            for port in handle.spec.ports:
                name = proxy_name(self.session, handle.name, port)
                host, direct_port = handle.direct_address(port)
                self.client.destroy(name)  # a stale one from a crashed run of this session
                address = self.client.create(name, f"{host}:{direct_port}")
                self.proxies[(handle.name, port)] = (name, address)
            handle.route_through(self._route)

    def _route(self, handle: ServiceHandle, port: int) -> tuple[str, int]:
        found = self.proxies.get((handle.name, port))
        return found[1] if found is not None else handle.direct_address(port)

    def proxies_of(self, handles: Sequence[Handle]) -> list[str]:
        """Every proxy touching these instances: their edge, and links from or to them."""
        names = {h.name for h in handles}
        edge = [name for (svc, _), (name, _) in self.proxies.items() if svc in names]
        links = [
            name
            for link, (name, _) in self.links.items()
            if link.consumer in names or link.target in names
        ]
        return edge + links

    def between(self, a: str, b: str) -> list[str]:
        """The link proxies from a service in site `a` to one in `b`, or the other way."""
        return self.across([(a,), (b,)])

    def across(self, groups: Sequence[Sequence[str]]) -> list[str]:
        """The link proxies between services in two different groups of sites."""
        group_of = {site: i for i, group in enumerate(groups) for site in group}
        out = []
        for link, (name, _) in self.links.items():
            ends = (
                group_of.get(self._site_of.get(link.consumer, "")),
                group_of.get(self._site_of.get(link.target, "")),
            )
            if None not in ends and ends[0] != ends[1]:
                out.append(name)
        return out

    def one_way(self, source: Sequence[str], dest: Sequence[str]) -> list[tuple[str, str]]:
        """(proxy, stream) that carry what `source` sends to `dest`: the upstream of links
        from a client in `source` to a service in `dest`, the downstream of the reverse."""
        site = self._site_of
        out = []
        for link, (name, _) in self.links.items():
            consumer, target = site.get(link.consumer), site.get(link.target)
            if consumer in source and target in dest:
                out.append((name, "upstream"))
            elif consumer in dest and target in source:
                out.append((name, "downstream"))
        return out

    # -- fires ----------------------------------------------------------------------------

    def hold(self, proxies: Sequence[str]) -> None:
        """Count cuts someone else made (the suite burn of a shared copy): never healed here."""
        self._hold(proxies)

    def _hold(self, proxies: Sequence[str]) -> list[str]:
        """Count a cut on each proxy; return those this cut is the first on (to cut now)."""
        with self._lock:
            fresh = [p for p in proxies if self._held[p] == 0]
            for p in proxies:
                self._held[p] += 1
        return fresh

    def _release(self, proxies: Sequence[str], changed: Sequence[str]) -> None:
        """Drop a cut's count; heal the proxies no cut holds any more (that it had cut)."""
        with self._lock:
            last = []
            for p in proxies:
                self._held[p] -= 1
                if self._held[p] <= 0:
                    del self._held[p]
                    if p in changed:
                        last.append(p)
        problems = []
        assert self.client is not None
        for p in last:
            try:
                self.client.heal(p)
            except Exception as exc:
                problems.append(f"{p}: {exc}")
        if problems:
            raise FireError("healing links failed: " + "; ".join(problems))

    def make_step(self, effect: Effect, spec: FaultSpec, handles: Sequence[Handle]) -> CallStep:
        """The `links` effect: blackhole every proxy touching the burning instances, counted."""
        if effect != "links":
            raise FireError(f"unknown link effect {effect!r}")
        client = self.client
        assert client is not None
        proxies = self.proxies_of(handles)
        changed: list[str] = []

        def do() -> FaultTiming:
            fresh = self._hold(proxies)
            changed.extend(fresh)
            if not fresh:
                return FaultTiming("links", "no proxies" if not proxies else "already cut", 0.0)
            started = time.monotonic()
            offsets: dict[str, float] = {}
            for p in fresh:
                client.cut(p)
                offsets[p] = (time.monotonic() - started) * 1000.0
            method = "blackhole" if client.embedded else "timeout-0 toxics"
            return FaultTiming("links", method, max(offsets.values()), offsets)

        return CallStep("links", do, lambda: self._release(proxies, changed))

    # -- link faults ----------------------------------------------------------------------

    def partition(
        self, spec: PartitionSpec, test: str = "", direct: Step | None = None
    ) -> LinkFault:
        """Cut the links between the groups of sites (reference-counted with fires' cuts;
        one-way: a `timeout` toxic, timeout 0, on the one stream that carries what the first
        group sends to the second), then apply `direct` (a Step: the fault backend's cut of
        the direct traffic between the groups' containers); undone in reverse order by
        `lift()`."""
        client = self.client
        assert client is not None
        label = spec.describe()
        streams = self.one_way(*spec.groups) if spec.one_way else []
        proxies = [p for p, _ in streams] if spec.one_way else self.across(spec.groups)
        if not proxies and direct is None:
            raise FireError(
                f"partition {label}: no service-to-service link joins these sites, and "
                "nothing cuts their direct traffic here"
            )
        what = ["links cut"] if proxies else []
        if direct is not None:
            what.append("direct traffic cut")
        target = ("->" if spec.one_way else "|").join("+".join(g) for g in spec.groups)
        fault = LinkFault(
            "one-way" if spec.one_way else "partition", target, " + ".join(what), proxies, test
        )
        changed: list[str] = []
        applied: list[Step] = []
        held: list[bool] = []

        def undo(_: LinkFault) -> None:
            """Undo each part once, even if lifting is retried after a failure."""
            problems: list[BaseException] = []
            while applied:  # the direct cut first, then the links
                try:
                    applied.pop().undo()
                except Exception as exc:
                    problems.append(exc)
            try:
                self._remove_toxics(fault)
            except Exception as exc:
                problems.append(exc)
            fault.toxics.clear()
            if held:
                held.clear()
                try:
                    self._release(proxies, changed)
                except Exception as exc:
                    problems.append(exc)
            if problems:
                raise FireError(f"lifting partition {label}: " + "; ".join(map(str, problems)))

        fault.undo = undo
        try:
            started = time.monotonic()
            offsets: dict[str, float] = {}
            if spec.one_way:
                with self._lock:
                    self._faults += 1
                    tag = f"dcfire_oneway{self._faults}"
                for p, stream in streams:
                    name = f"{tag}_{stream}"
                    fault.toxics.append((p, name))  # recorded first: always removed
                    client.add_toxic(p, name, "timeout", stream, timeout=0)
                    offsets[p] = (time.monotonic() - started) * 1000.0
                if streams:
                    latency = max(offsets.values())
                    fault.steps.append(FaultTiming("links", "timeout-0 toxic", latency, offsets))
            else:
                fresh = self._hold(proxies)
                held.append(True)
                changed.extend(fresh)
                for p in fresh:
                    client.cut(p)
                    offsets[p] = (time.monotonic() - started) * 1000.0
                if proxies:
                    method = (
                        ("blackhole" if client.embedded else "timeout-0 toxics")
                        if fresh
                        else "already cut"
                    )
                    latency = max(offsets.values(), default=0.0)
                    fault.steps.append(FaultTiming("links", method, latency, offsets))
            if direct is not None:
                applied.append(direct)  # recorded before it is applied: always undone
                fault.steps.append(direct.apply())
        except BaseException:
            fault.lift()
            raise
        fault.setup_ms = (time.monotonic() - fault.started) * 1000.0
        return fault

    def brownout(self, spec: BrownoutSpec, handles: Sequence[Handle], test: str = "") -> LinkFault:
        """Latency (ms, ± jitter) and bandwidth (KB/s) toxics on both streams of each proxy."""
        client = self.client
        assert client is not None
        proxies = self.proxies_of(handles)
        if not proxies:
            raise FireError(
                f"brownout {spec.target}: no link touches it (declare `ports:`, or link to it "
                "with a `${link:...}` placeholder)"
            )
        with self._lock:
            self._faults += 1
            tag = f"dcfire_brownout{self._faults}"
        fault = LinkFault("brownout", spec.target, spec.describe(), proxies, test)
        fault.undo = self._remove_toxics
        try:
            for p in proxies:
                for stream in ("upstream", "downstream"):
                    if spec.latency or spec.jitter:
                        name = f"{tag}_latency_{stream}"
                        fault.toxics.append((p, name))
                        client.add_toxic(
                            p,
                            name,
                            "latency",
                            stream,
                            latency=int(spec.latency),
                            jitter=int(spec.jitter),
                        )
                    if spec.bandwidth is not None:
                        name = f"{tag}_bandwidth_{stream}"
                        fault.toxics.append((p, name))
                        client.add_toxic(p, name, "bandwidth", stream, rate=int(spec.bandwidth))
        except BaseException:
            fault.lift()
            raise
        fault.setup_ms = (time.monotonic() - fault.started) * 1000.0
        kinds = [
            k
            for k, used in (
                ("latency", spec.latency or spec.jitter),
                ("bandwidth", spec.bandwidth is not None),
            )
            if used
        ]
        # The link-fault table's `via`: which toxics, not "-" as if nothing had been done.
        fault.steps.append(
            FaultTiming("links", ("+".join(kinds) or "no") + " toxics", fault.setup_ms)
        )
        return fault

    def _remove_toxics(self, fault: LinkFault) -> None:
        """Remove a brownout's toxics (missing ones are fine: the proxy may be gone)."""
        if self.client is None:
            return
        for proxy, name in reversed(fault.toxics):
            self.client.remove_toxic(proxy, name)

    # -- end of session -------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove our proxies (only ours, on a shared server); stop the server we started."""
        problems: list[str] = []
        if self.attached:  # the owner of the shared copy removes its proxies
            self.proxies.clear()
            self.links.clear()
            return problems
        if self.client is not None and self.server is None and self._container is None:
            for name, _ in [*self.proxies.values(), *self.links.values()]:
                try:
                    self.client.destroy(name)
                except Exception as exc:
                    problems.append(f"proxy {name}: {exc}")
        if self.server is not None:
            try:
                self.server.stop()
            except Exception as exc:
                problems.append(f"toxiproxy: {exc}")
            self.server = None
        if self._container is not None:
            try:
                self._container.remove(force=True)
            except Exception as exc:
                if "No such container" not in str(exc):
                    problems.append(f"toxiproxy container: {exc}")
            self._container = None
        self.proxies.clear()
        self.links.clear()
        return problems


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text if len(text) < 300 else text[:297] + "..."


def require_links(links: Links | None, what: str) -> Links:
    if links is None:
        raise DcfireError(f"{what}: links are not running (no system started)")
    return links
