"""Data-plane corners where Toxiproxy's behaviour follows from its source, not its docs.

Each test states what toxiproxy-server 2.12 does (toxics/*.go, link.go) and was run against
one (``DCFIRE_TOXIPROXY_URL``), so the embedded server is held to the same behaviour.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest
from toxiproxy_helpers import Api, Upstream, assert_hangs, connect, recv_exactly, round_trip

UpstreamFactory = Callable[[Callable[[socket.socket], None]], Upstream]


def _source(payload: bytes) -> Callable[[socket.socket], None]:
    """An upstream that sends ``payload`` as soon as a client arrives, then closes."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    return handler


# -- bandwidth with rate 0 ----------------------------------------------------------------------
# Toxiproxy's loop "while len(data) > rate*100: wait 100 ms, pass data[:rate*100]" passes
# nothing, forever, when the rate is 0: the chunk (and all behind it, the end of the stream
# too) is held until the toxic is updated or removed, which hands the chunk on at once.


def test_bandwidth_rate_zero_holds_data_and_end_of_stream(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(_source(b"payload"))
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="bandwidth", attributes={"rate": 0})
    with connect(proxy) as sock:
        assert_hangs(sock, 0.5)  # neither the bytes nor the close come through
        api.delete("/proxies/p/toxics/bandwidth_downstream")
        assert recv_exactly(sock, 7) == b"payload"
        assert sock.recv(1) == b""


def test_bandwidth_rate_zero_on_a_live_link_until_the_rate_is_raised(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        round_trip(sock)
        api.toxic("p", type="bandwidth", attributes={"rate": 0})
        sock.sendall(b"held")
        assert_hangs(sock, 0.5)
        start = time.monotonic()
        api.patch("/proxies/p/toxics/bandwidth_downstream", {"attributes": {"rate": 1000}})
        assert recv_exactly(sock, 4) == b"held"  # the held chunk is passed on when updated
        assert time.monotonic() - start < 1
        assert round_trip(sock) < 1


# -- timeout: the timer restarts with every chunk ----------------------------------------------
# Toxiproxy's select loop makes a new time.After(timeout) each time round, so each chunk it
# drops starts the wait again: the connection closes ``timeout`` ms after the last data.


def test_timeout_timer_restarts_while_data_keeps_flowing(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="timeout", attributes={"timeout": 400})
    with connect(proxy) as sock:
        for _ in range(10):  # 1 s of traffic, a chunk every 100 ms: never 400 ms idle
            last = time.monotonic()
            sock.sendall(b"x")  # echoed by the upstream, dropped by the toxic
            assert_hangs(sock, 0.1)
        assert sock.recv(1) == b""
        assert 0.38 <= time.monotonic() - last < 2  # 400 ms after the last chunk


# -- reset_peer and SO_LINGER 0 -------------------------------------------------------------
# Toxiproxy sets SO_LINGER 0 on a connection's two sockets when the connection starts with a
# reset_peer toxic in its chain (either direction, whatever the toxicity draw); it is what
# turns the toxic's close into a reset. A toxic added to an open connection closes it with a
# plain FIN; and a connection that started with one keeps resetting on every close.


def test_reset_peer_added_to_an_open_connection_closes_without_a_reset(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        round_trip(sock)
        api.toxic("p", type="reset_peer", attributes={"timeout": 0})
        sock.sendall(b"x")
        assert sock.recv(1) == b""  # an end of stream, not ConnectionResetError


def test_reset_peer_on_an_open_connection_with_a_new_one_resetting(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as old:
        round_trip(old)
        api.toxic("p", type="reset_peer", stream="upstream", attributes={"timeout": 0})
        with connect(proxy) as new:
            new.sendall(b"x")
            with pytest.raises(ConnectionResetError):
                new.recv(1)
        old.sendall(b"x")
        assert old.recv(1) == b""


def test_a_connection_opened_with_reset_peer_resets_after_its_removal(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    def echo_once(conn: socket.socket) -> None:
        conn.sendall(conn.recv(64))  # then a graceful close (FIN) by the upstream

    upstream = upstream_factory(echo_once)
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="reset_peer", stream="upstream", toxicity=0, attributes={"timeout": 0})
    with connect(proxy) as sock:
        assert round_trip(sock) < 1  # toxicity 0: the toxic never acts on this connection
        with pytest.raises(ConnectionResetError):
            sock.recv(1)  # ... but the upstream's FIN reaches the client as a reset


def test_a_connection_opened_after_reset_peer_is_removed_closes_cleanly(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(_source(os.urandom(1000)))
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="reset_peer", attributes={"timeout": 0})
    api.delete("/proxies/p/toxics/reset_peer_downstream")
    with connect(proxy) as sock:
        assert len(recv_exactly(sock, 1000)) == 1000
        assert sock.recv(1) == b""
