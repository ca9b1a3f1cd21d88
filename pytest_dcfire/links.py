"""Links: the Toxiproxy proxies between the test process and every declared service port.

`service.address(port)` goes through one proxy per port, so a fire can cut the edge the way
a dead site looks to a client (connections hang; nothing is reset) and a brownout can add the
latency and bandwidth limits of a degraded WAN link. One client path serves every server mode
(embedded, url; image later): toxiproxy-python, wrapped here and nowhere else, because it keeps
the server's address in class attributes that must be set under a lock before each call.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pytest_dcfire.config import INI_TOXIPROXY, TOXIPROXY_FORMS, Settings
from pytest_dcfire.errors import ConfigError, DcfireError, FireError
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.fire import CallStep, FireSpec

Progress = Callable[[str], None]

_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")
_CALL_LOCK = threading.Lock()
#: On a real Toxiproxy a blackhole is a `timeout` toxic with timeout 0 on both streams.
_CUT_TOXICS = ("dcfire_cut_up", "dcfire_cut_down")


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

    def create(self, name: str, upstream: str) -> tuple[str, int]:
        """Create a proxy listening on an ephemeral port; return where clients connect."""
        local = self.host in ("127.0.0.1", "localhost", "::1")
        listen = f"{'127.0.0.1' if local else '0.0.0.0'}:0"
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


@dataclass
class Brownout:
    """A degraded link, as recorded on the controller and undone at teardown."""

    target: str
    proxies: list[str]
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None
    started: float = 0.0
    restored: float | None = None
    toxics: list[tuple[str, str]] = field(default_factory=list)


class Links:
    """The session's Toxiproxy server (or a client of one) and its proxies, one per port."""

    def __init__(self, settings: Settings, session: str, progress: Progress) -> None:
        self.settings = settings
        self.session = session
        self.progress = progress
        self.server: Any = None
        self.client: LinkClient | None = None
        #: (service, port) -> (proxy name, client address)
        self.proxies: dict[tuple[str, int], tuple[str, tuple[str, int]]] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._brownouts = 0

    def start(self) -> Links:
        """Start (embedded) or reach (url) the server; fail with the ini key named."""
        mode, _, rest = self.settings.toxiproxy.partition(":")
        if mode == "image":
            raise ConfigError(
                f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}: image mode is not supported "
                "yet; use embedded (the default) or url:<http://host:port> of a running "
                "Toxiproxy (e.g. `python -m pytest_dcfire.toxiproxy --port 8474`)"
            )
        if mode == "url":
            self.client = LinkClient(rest)
            try:
                self.client.version()
            except Exception as exc:
                raise ConfigError(
                    f"{INI_TOXIPROXY} = {self.settings.toxiproxy!r}: no Toxiproxy answers at "
                    f"{rest}/version ({type(exc).__name__}); start one there or use "
                    f"{TOXIPROXY_FORMS}"
                ) from None
            return self
        from pytest_dcfire.toxiproxy import EmbeddedToxiproxy

        self.server = EmbeddedToxiproxy().start()
        self.client = LinkClient(self.server.url)
        return self

    def attach(self, system: Any) -> None:
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

    def _route(self, handle: Any, port: int) -> tuple[str, int]:
        found = self.proxies.get((handle.name, port))
        return found[1] if found is not None else handle.direct_address(port)

    def proxies_of(self, handles: Sequence[Any]) -> list[str]:
        names = {h.name for h in handles}
        return [name for (svc, _), (name, _) in self.proxies.items() if svc in names]

    # -- fires ----------------------------------------------------------------------------

    def make_step(self, effect: str, spec: FireSpec, handles: Sequence[Any]) -> CallStep:
        """The `links` effect: blackhole the proxies of the burning instances, counted."""
        if effect != "links":
            raise FireError(f"unknown link effect {effect!r}")
        client = self.client
        assert client is not None
        proxies = self.proxies_of(handles)
        changed: list[str] = []

        def do() -> FaultTiming:
            with self._lock:
                fresh = [p for p in proxies if self._held[p] == 0]
                for p in proxies:
                    self._held[p] += 1
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

        def undo_fn() -> None:
            with self._lock:
                last = []
                for p in proxies:
                    self._held[p] -= 1
                    if self._held[p] <= 0:
                        del self._held[p]
                        if p in changed:
                            last.append(p)
            problems = []
            for p in last:
                try:
                    client.heal(p)
                except Exception as exc:
                    problems.append(f"{p}: {exc}")
            if problems:
                raise FireError("healing links failed: " + "; ".join(problems))

        return CallStep("links", do, undo_fn)

    def brownout(
        self,
        target: str,
        handles: Sequence[Any],
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: int | None = None,
    ) -> Brownout:
        """Latency (ms, ± jitter) and bandwidth (KB/s) toxics on both streams of each proxy."""
        assert self.client is not None
        proxies = self.proxies_of(handles)
        if not proxies:
            raise FireError(f"brownout {target}: none of its instances declares `ports:`")
        with self._lock:
            self._brownouts += 1
            tag = f"dcfire_brownout{self._brownouts}"
        record = Brownout(target, proxies, latency, jitter, bandwidth, time.monotonic())
        try:
            for p in proxies:
                for stream in ("upstream", "downstream"):
                    if latency or jitter:
                        name = f"{tag}_latency_{stream}"
                        record.toxics.append((p, name))
                        self.client.add_toxic(
                            p, name, "latency", stream, latency=int(latency), jitter=int(jitter)
                        )
                    if bandwidth is not None:
                        name = f"{tag}_bandwidth_{stream}"
                        record.toxics.append((p, name))
                        self.client.add_toxic(p, name, "bandwidth", stream, rate=int(bandwidth))
        except BaseException:
            self.lift(record)
            raise
        return record

    def lift(self, record: Brownout) -> None:
        """Remove a brownout's toxics (missing ones are fine: the proxy may be gone)."""
        if record.restored is not None or self.client is None:
            return
        for proxy, name in reversed(record.toxics):
            self.client.remove_toxic(proxy, name)
        record.restored = time.monotonic()

    # -- end of session -------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove our proxies (only ours, on a shared server) and stop the embedded server."""
        problems: list[str] = []
        if self.client is not None and self.server is None:
            for name, _ in self.proxies.values():
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
        self.proxies.clear()
        return problems


def require_links(links: Links | None, what: str) -> Links:
    if links is None:
        raise DcfireError(f"{what}: links are not running (no system started)")
    return links
