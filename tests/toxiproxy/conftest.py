"""Fixtures for the embedded Toxiproxy tests: the server, its clients and small upstreams.

Everything is real sockets on 127.0.0.1: one embedded server per test session (per xdist
worker), emptied after every test, and upstream servers started by the tests themselves.

``DCFIRE_TOXIPROXY_URL=http://127.0.0.1:8474`` runs the API tests against that server
instead (e.g. a real toxiproxy-server, to prove the embedded one behaves the same); tests
marked ``embedded_only`` then skip unless the server says it is ours.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy_helpers import Api, ServerUnderTest, Upstream, echo_handler

from pytest_dcfire.toxiproxy import EmbeddedToxiproxy

#: Where an external Toxiproxy-compatible server listens; unset: start the embedded one.
URL_ENV = "DCFIRE_TOXIPROXY_URL"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_only(reason): checks our extensions or embedded-only behaviour; skipped "
        f"when {URL_ENV} points at a server that is not pytest-dcfire's",
    )


@pytest.fixture(scope="session")
def server_under_test() -> Iterator[ServerUnderTest]:
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        with EmbeddedToxiproxy(seed=1) as server:
            yield ServerUnderTest(server.host, server.port, ours=True)
        return
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname or not parts.port:
        raise pytest.UsageError(f"{URL_ENV}={url!r}: expected http://HOST:PORT")
    raw = Api(parts.hostname, parts.port)
    try:
        version = raw("GET", "/version")
    except OSError as exc:
        raise pytest.UsageError(f"{URL_ENV}={url!r}: no Toxiproxy answers there ({exc})") from None
    ours = json.loads(version.body).get("implementation") == "pytest-dcfire"
    yield ServerUnderTest(parts.hostname, parts.port, ours)


@pytest.fixture(autouse=True)
def _skip_embedded_only(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("embedded_only")
    if marker is None:
        return
    server: ServerUnderTest = request.getfixturevalue("server_under_test")
    if not server.ours:
        reason = marker.args[0] if marker.args else "embedded-only behaviour"
        pytest.skip(f"{URL_ENV} is not pytest-dcfire's server: {reason}")


@pytest.fixture
def api(server_under_test: ServerUnderTest) -> Iterator[Api]:
    raw = Api(server_under_test.host, server_under_test.port)
    if not server_under_test.ours:
        _remove_all(raw)  # an external server may hold proxies from before this run
    yield raw
    _remove_all(raw)


def _remove_all(raw: Api) -> None:
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
