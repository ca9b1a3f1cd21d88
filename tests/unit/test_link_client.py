"""Links without Docker: the client wrapper against the embedded server and a local echo."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dcfire.config import Settings
from pytest_dcfire.errors import ConfigError, FireError
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.linkfaults import BrownoutSpec, PartitionSpec
from pytest_dcfire.links import LinkClient, Links, proxy_name
from pytest_dcfire.modes import Effect
from pytest_dcfire.topology.model import Link, Service
from pytest_dcfire.toxiproxy import EmbeddedToxiproxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield ("127.0.0.1", server.getsockname()[1])
    server.close()


class Handle:
    """The parts of a ServiceHandle that Links uses."""

    container = None
    adopted = False

    def __init__(self, name: str, site: str, upstream: tuple[str, int]) -> None:
        self.name, self.site, self._upstream = name, site, upstream
        self.spec = Service(name, name.split("@")[0], site, ports=(7000,))
        self.router: Any = None

    def direct_address(self, port: int) -> tuple[str, int]:
        return self._upstream

    def route_through(self, router: Any) -> None:
        self.router = router

    def address(self, port: int) -> tuple[str, int]:
        return tuple(self.router(self, port))


def settings(toxiproxy: str = "embedded") -> Settings:
    return Settings(None, 5.0, toxiproxy, False, False, Path("."))


def roundtrip(addr: tuple[str, int], payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(100)


@pytest.fixture
def links(echo: tuple[str, int]) -> Iterator[tuple[Links, Handle]]:
    links = Links(settings(), "dcfT", lambda line: None).start()
    handle = Handle("echo@east", "east", echo)
    links.attach(SimpleNamespace(services={"echo@east": handle}))  # type: ignore[arg-type]
    yield links, handle
    assert links.close() == []


def test_proxy_names_are_validated() -> None:
    assert proxy_name("dcf1", "echo@east", 7000) == "dcf1-echo_east-7000"
    assert proxy_name("dcf1", "a/b c", 1) == "dcf1-a_b_c-1"


def test_address_goes_through_a_named_proxy(links: tuple[Links, Handle]) -> None:
    manager, handle = links
    assert handle.address(7000) != handle.direct_address(7000)
    assert roundtrip(handle.address(7000)) == b"ping"
    assert manager.client is not None
    proxies = manager.client.proxies()
    assert proxies["dcfT-echo_east-7000"]["upstream"].endswith(str(handle.direct_address(7000)[1]))


@pytest.mark.parametrize("embedded", [True, False], ids=["blackhole", "timeout-toxics"])
def test_links_step_hangs_then_heals_and_is_counted(
    links: tuple[Links, Handle], embedded: bool
) -> None:
    manager, handle = links
    assert manager.client is not None
    manager.client._embedded = embedded  # False: the path a real Toxiproxy takes
    spec = FireSpec(("east",))
    outer = manager.make_step("links", spec, [handle])
    inner = manager.make_step("links", spec, [handle])
    timing = outer.apply()
    assert timing.method == ("blackhole" if embedded else "timeout-0 toxics")
    assert set(timing.offsets_ms) == {"dcfT-echo_east-7000"}
    assert inner.apply().method == "already cut"
    with socket.create_connection(handle.address(7000), timeout=0.5) as s:  # accepted
        s.sendall(b"x")
        with pytest.raises(TimeoutError):
            s.recv(10)
    inner.undo()  # the outer fire still burns
    with pytest.raises(TimeoutError), socket.create_connection(handle.address(7000), 0.5) as s:
        s.sendall(b"x")
        s.recv(10)
    outer.undo()
    assert roundtrip(handle.address(7000)) == b"ping"


def test_brownout_adds_latency_and_lift_removes_it(links: tuple[Links, Handle]) -> None:
    manager, handle = links
    record = manager.brownout(BrownoutSpec("east", latency=100), [handle])
    with socket.create_connection(handle.address(7000), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"slow")
        assert s.recv(10) == b"slow"
        assert time.monotonic() - started >= 0.18  # 100 ms each way
    assert len(record.toxics) == 2
    assert record.via == "links: latency toxics"  # the link-fault table's `via`, not "-"
    record.lift()
    assert record.restored is not None
    record.lift()  # twice is fine
    assert manager.client is not None
    assert manager.client.proxies()["dcfT-echo_east-7000"]["toxics"] == []


def test_url_mode_uses_a_running_server_and_removes_only_its_proxies(
    echo: tuple[str, int],
) -> None:
    with EmbeddedToxiproxy() as server:
        other = LinkClient(server.url)
        other.create("theirs", f"{echo[0]}:{echo[1]}")
        manager = Links(settings(f"url:{server.url}"), "dcfU", lambda line: None).start()
        handle = Handle("echo@east", "east", echo)
        manager.attach(SimpleNamespace(services={"echo@east": handle}))  # type: ignore[arg-type]
        assert roundtrip(handle.address(7000)) == b"ping"
        assert manager.close() == []
        assert set(other.proxies()) == {"theirs"}


def test_unreachable_url_and_image_mode_name_the_ini_key() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=r"dcfire_toxiproxy = 'url:http://127.0.0.1:\d+'"):
        Links(settings(f"url:http://127.0.0.1:{port}"), "x", print).start()
    with pytest.raises(ConfigError, match=r"dcfire_toxiproxy = 'image: ': no image"):
        Links(settings("image: "), "x", print).start()


def test_a_partition_needs_a_link_between_the_two_sites(links: tuple[Links, Handle]) -> None:
    manager, _ = links
    with pytest.raises(FireError, match="no service-to-service link joins these sites, and"):
        manager.partition(PartitionSpec((("east",), ("west",))))


class DirectStep:
    """A stand-in for the fault backend's peer cut: records what happened, in order."""

    effect: Effect = "peers"

    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    def apply(self) -> FaultTiming:
        self.log.append("direct cut")
        if self.fail:
            raise FireError("the helper said no")
        return FaultTiming("peers", "nftables", 1.5, {"echo@east": 1.0, "echo@west": 1.5})

    def undo(self) -> None:
        self.log.append("direct restored")


def with_link(manager: Links, echo: tuple[str, int], log: list[str]) -> str:
    """Add a link proxy between east and west, and log when it is healed."""
    assert manager.client is not None
    address = manager.client.create("dcfT-link", f"{echo[0]}:{echo[1]}")
    link = Link("client@east", "echo@west", "echo@west", 7000)
    manager.links[link] = ("dcfT-link", address)
    manager._site_of.update({"client@east": "east", "echo@west": "west"})
    heal = manager.client.heal

    def logged_heal(proxy: str) -> None:
        log.append(f"healed {proxy}")
        heal(proxy)

    manager.client.heal = logged_heal  # type: ignore[method-assign]
    return "dcfT-link"


def test_a_partition_cuts_direct_traffic_without_links(links: tuple[Links, Handle]) -> None:
    manager, _ = links
    log: list[str] = []
    fault = manager.partition(PartitionSpec((("east",), ("west",))), direct=DirectStep(log))
    assert (fault.detail, fault.proxies, fault.via) == ("direct traffic cut", [], "peers: nftables")
    assert log == ["direct cut"]
    fault.lift()
    fault.lift()
    assert log == ["direct cut", "direct restored"]


def test_a_partition_undoes_the_direct_cut_then_the_links(
    links: tuple[Links, Handle], echo: tuple[str, int]
) -> None:
    manager, _ = links
    log: list[str] = []
    proxy = with_link(manager, echo, log)
    with manager.partition(PartitionSpec((("west",), ("east",))), direct=DirectStep(log)) as fault:
        assert fault.detail == "links cut + direct traffic cut"
        assert fault.via == "links: blackhole + peers: nftables"
        assert fault.proxies == [proxy]
        assert manager.client is not None
        assert manager.client.proxies()[proxy].get("blackhole") is True
    assert log == ["direct cut", "direct restored", f"healed {proxy}"]


def test_a_failed_direct_cut_heals_the_links_it_cut(
    links: tuple[Links, Handle], echo: tuple[str, int]
) -> None:
    manager, _ = links
    log: list[str] = []
    proxy = with_link(manager, echo, log)
    with pytest.raises(FireError, match="the helper said no"):
        manager.partition(PartitionSpec((("east",), ("west",))), direct=DirectStep(log, fail=True))
    assert log == ["direct cut", "direct restored", f"healed {proxy}"]
    assert manager._held == {}


def test_a_one_way_partition_cuts_one_stream_of_each_link(
    links: tuple[Links, Handle], echo: tuple[str, int]
) -> None:
    """client@east -> echo@west: east -> west is the link's upstream, west -> east its
    downstream; a one-way cut adds a timeout-0 toxic on that stream only, then removes it."""
    manager, _ = links
    log: list[str] = []
    proxy = with_link(manager, echo, log)
    assert manager.client is not None

    def streams() -> list[tuple[str, str, int]]:
        assert manager.client is not None
        return [
            (t["type"], t["stream"], t["attributes"]["timeout"])
            for t in manager.client.proxies()[proxy]["toxics"]
        ]

    for order, stream in ((("east", "west"), "upstream"), (("west", "east"), "downstream")):
        spec = PartitionSpec(tuple((site,) for site in order), one_way=True)
        with manager.partition(spec, direct=DirectStep(log)) as fault:
            assert fault.kind == "one-way" and fault.target == "->".join(order)
            assert streams() == [("timeout", stream, 0)]
            assert fault.via == "links: timeout-0 toxic + peers: nftables"
            assert not manager.client.proxies()[proxy].get("blackhole")
        assert streams() == []
    assert manager._held == {}  # one-way never holds the links' cut
    assert manager.one_way(("east",), ("daejeon",)) == []
