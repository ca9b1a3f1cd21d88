"""Blackholing a proxy: connections hang (no data, no EOF, no reset) and new ones are not refused.

Two ways: our extension (``"blackhole": true`` on the proxy, which holds bytes and delivers
them when lifted), and what works on a real Toxiproxy too (a ``timeout`` toxic with
``timeout: 0`` on both streams, which drops bytes and closes the connections when removed).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import pytest
from toxiproxy_helpers import (
    Api,
    Upstream,
    assert_hangs,
    connect,
    recv_exactly,
    round_trip,
    wait_for,
)

EXTENSION = pytest.mark.embedded_only("the blackhole field is our extension")

UpstreamFactory = Callable[[Callable[[socket.socket], None]], Upstream]


def _ticker(conn: socket.socket) -> None:
    """An upstream that talks on its own: one byte every 20 ms."""
    while True:
        conn.sendall(b"t")
        time.sleep(0.02)


def _timeout_toxics(api: Api) -> None:
    api.toxic("p", type="timeout", name="cut_up", stream="upstream", attributes={"timeout": 0})
    api.toxic("p", type="timeout", name="cut_down", stream="downstream", attributes={"timeout": 0})


# -- the extension ------------------------------------------------------------------------------


@EXTENSION
def test_blackhole_holds_both_directions_then_delivers(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        round_trip(sock, b"before")
        api.patch("/proxies/p", {"blackhole": True})
        sock.sendall(b"held")
        assert_hangs(sock)
        assert bytes(echo.received) == b"before"  # nothing reached the upstream
        api.patch("/proxies/p", {"blackhole": False})
        assert recv_exactly(sock, 4) == b"held"  # held, not dropped
        assert round_trip(sock, b"after") < 1


@EXTENSION
def test_blackhole_holds_what_the_upstream_sends(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(_ticker)
    proxy = api.create("p", upstream.port)
    with connect(proxy) as sock:
        assert sock.recv(1) == b"t"
        api.patch("/proxies/p", {"blackhole": True})
        with contextlib.suppress(TimeoutError):
            sock.settimeout(0.1)
            while sock.recv(4096):  # drain what was already on its way
                pass
        assert_hangs(sock)
        api.patch("/proxies/p", {"blackhole": False})
        sock.settimeout(5)
        assert sock.recv(4096).strip(b"t") == b""


@EXTENSION
def test_blackhole_new_connections_are_accepted_but_silent(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port, blackhole=True)
    with connect(proxy) as sock:  # not refused
        sock.sendall(b"hello")
        assert_hangs(sock)
        assert echo.accepted == 0  # the upstream never saw a connection
        api.patch("/proxies/p", {"blackhole": False})
        assert recv_exactly(sock, 5) == b"hello"
        assert echo.accepted == 1


@EXTENSION
def test_bytes_and_eof_sent_before_the_upstream_is_dialled_are_kept(
    api: Api, echo: Upstream
) -> None:
    # A held connection reads the client's first bytes (and its half-close) before any
    # upstream exists; they must reach the upstream once the blackhole lifts.
    proxy = api.create("p", echo.port, blackhole=True)
    with connect(proxy) as sock:
        sock.sendall(b"early")
        sock.shutdown(socket.SHUT_WR)
        assert_hangs(sock)
        api.patch("/proxies/p", {"blackhole": False})
        assert recv_exactly(sock, 5) == b"early"
        assert sock.recv(1) == b""


@EXTENSION
def test_blackhole_holds_the_end_of_stream(api: Api, upstream_factory: UpstreamFactory) -> None:
    def greet_and_close(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"bye")

    upstream = upstream_factory(greet_and_close)
    proxy = api.create("p", upstream.port)
    with connect(proxy) as sock:
        api.patch("/proxies/p", {"blackhole": True})
        sock.sendall(b"x")
        assert_hangs(sock)
        api.patch("/proxies/p", {"blackhole": False})
        assert recv_exactly(sock, 3) == b"bye"
        assert sock.recv(1) == b""


@EXTENSION
def test_blackhole_with_toxics_and_reset(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 100})
    with connect(proxy) as sock:
        api.patch("/proxies/p", {"blackhole": True})
        sock.sendall(b"x")
        assert_hangs(sock)
        assert api("POST", "/reset").status == 204  # lifts the blackhole, drops the toxic
        assert api("GET", "/proxies/p").json()["blackhole"] is False
        assert recv_exactly(sock, 1) == b"x"
        assert round_trip(sock) < 0.09


@EXTENSION
def test_disabling_a_blackholed_proxy_closes_everything(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    established = connect(proxy)
    round_trip(established)
    api.patch("/proxies/p", {"blackhole": True})
    waiting = connect(proxy)
    api.patch("/proxies/p", {"enabled": False})
    for sock in (established, waiting):
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)


# -- the same hang with standard toxics (what a real Toxiproxy offers) ---------------------------


def test_timeout_zero_on_both_streams_hangs_established_connections(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(_ticker)
    proxy = api.create("p", upstream.port)
    with connect(proxy) as sock:
        assert sock.recv(1) == b"t"
        _timeout_toxics(api)
        with contextlib.suppress(TimeoutError):
            sock.settimeout(0.1)
            while sock.recv(4096):
                pass
        sock.sendall(b"dropped")
        assert_hangs(sock)


def test_timeout_zero_on_both_streams_hangs_new_connections(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    _timeout_toxics(api)
    with connect(proxy) as sock:  # accepted, not refused
        sock.sendall(b"dropped")
        assert_hangs(sock)
        wait_for(lambda: echo.accepted == 1)  # Toxiproxy dials the upstream regardless
        assert bytes(echo.received) == b""
        api.delete("/proxies/p/toxics/cut_up")
        api.delete("/proxies/p/toxics/cut_down")
        assert sock.recv(1) == b""  # removing timeout toxics closes what they held
    with connect(proxy) as sock:
        assert round_trip(sock) < 1
