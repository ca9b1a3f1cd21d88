"""The embedded server's life cycle in the test process: start, stop, restart, failures."""

from __future__ import annotations

import socket

import pytest
from toxiproxy_helpers import Api, Upstream, connect, round_trip

from pytest_dcfire.toxiproxy import EmbeddedToxiproxy, ProxyError


def test_start_sets_the_address_and_stop_is_idempotent(echo: Upstream) -> None:
    server = EmbeddedToxiproxy()
    assert not server.running
    assert server.start() is server
    assert server.start() is server  # a second start is a no-op
    assert server.running and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert "running" in repr(server)
    api = Api(server.host, server.port)
    proxy = api.create("p", echo.port)
    sock = connect(proxy)
    round_trip(sock)
    server.stop()
    server.stop()
    assert not server.running
    # Everything is closed: the API, the proxy's listener and its connections.
    assert sock.recv(1) == b""
    sock.close()
    for port in (server.port, int(proxy["listen"].rsplit(":", 1)[1])):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)


def test_context_manager_and_restart() -> None:
    with EmbeddedToxiproxy() as server:
        first = server.port
        assert Api(server.host, first)("GET", "/version").status == 200
    assert not server.running
    with server:  # starts again (a fresh, empty server)
        assert Api(server.host, server.port)("GET", "/proxies").json() == {}
    server.stop()


def test_fixed_port_and_conflicts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with EmbeddedToxiproxy(port=port) as server:
        assert server.port == port
        with pytest.raises(ProxyError, match="address already in use"):
            EmbeddedToxiproxy(port=port).start()


def test_two_servers_are_independent(echo: Upstream) -> None:
    with EmbeddedToxiproxy() as one, EmbeddedToxiproxy() as two:
        Api(one.host, one.port).create("p", echo.port)
        assert Api(two.host, two.port)("GET", "/proxies").json() == {}
