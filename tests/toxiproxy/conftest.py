"""Fixtures for the embedded Toxiproxy tests: the server, its clients and small upstreams.

Everything is real sockets on 127.0.0.1: one embedded server per test session (per xdist
worker), emptied after every test, and upstream servers started by the tests themselves.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy_helpers import Api, Upstream, echo_handler

from pytest_dcfire.toxiproxy import EmbeddedToxiproxy


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[EmbeddedToxiproxy]:
    with EmbeddedToxiproxy(seed=1) as server:
        yield server


@pytest.fixture
def api(embedded_server: EmbeddedToxiproxy) -> Iterator[Api]:
    raw = Api(embedded_server.host, embedded_server.port)
    yield raw
    for name in raw("GET", "/proxies").json():
        raw("DELETE", f"/proxies/{quote(name, safe='')}")


@pytest.fixture
def client(api: Api) -> Iterator[Toxiproxy]:
    """toxiproxy-python, pointed at the embedded server (it keeps the address on a class)."""
    saved = APIConsumer.host, APIConsumer.port
    toxiproxy = Toxiproxy()
    toxiproxy.update_api_consumer(api.host, api.port)
    yield toxiproxy
    APIConsumer.host, APIConsumer.port = saved


@pytest.fixture
def upstream_factory() -> Iterator[Callable[[Callable[[socket.socket], None]], Upstream]]:
    servers: list[Upstream] = []

    def make(handler: Callable[[socket.socket], None]) -> Upstream:
        server = Upstream(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def echo(upstream_factory: Callable[[Callable[[socket.socket], None]], Upstream]) -> Upstream:
    server = upstream_factory(echo_handler)

    # Remember what arrived, so a test can tell that nothing reached the upstream.
    def recording_echo(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            server.received.extend(data)
            conn.sendall(data)

    server.handler = recording_echo
    return server
