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


def test_removing_reset_peer_once_it_has_data_does_not_stop_the_reset(
    api: Api, echo: Upstream
) -> None:
    # Its goroutine waits out the timeout without listening for the interrupt.
    proxy = api.create("p", echo.port)
    api.toxic("p", type="reset_peer", attributes={"timeout": 500})
    with connect(proxy) as sock:
        sock.sendall(b"x")
        time.sleep(0.2)  # the echoed "x" has reached the toxic
        api.delete("/proxies/p/toxics/reset_peer_downstream")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


# -- the toxic before one that is added or removed is interrupted and run again -------------
# link.go rewires a toxic's output by interrupting it (InterruptToxic) and starting it again:
# the last toxic when one is added, the one before when one is removed. Interrupted, latency,
# bandwidth and slicer pass on the chunk they were working on; run again, the toxic draws its
# toxicity anew.


def test_adding_a_toxic_passes_on_the_chunk_the_last_one_was_delaying(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 10000})
    with connect(proxy) as sock:
        sock.sendall(b"a")
        time.sleep(1.0)  # "a" is being delayed (a second: a loaded machine is slow to get it there)
        start = time.monotonic()
        api.toxic("p", type="noop", name="n")
        assert recv_exactly(sock, 1) == b"a"
        assert time.monotonic() - start < 5  # not the 10 s of latency


def test_removing_a_toxic_passes_on_the_chunk_the_one_before_was_delaying(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 10000})
    api.toxic("p", type="noop", name="n")
    with connect(proxy) as sock:
        sock.sendall(b"a")
        time.sleep(1.0)
        start = time.monotonic()
        api.delete("/proxies/p/toxics/n")
        assert recv_exactly(sock, 1) == b"a"
        assert time.monotonic() - start < 5  # not the 10 s of latency


def test_updating_a_latency_toxic_passes_on_the_chunk_it_was_delaying(
    api: Api, echo: Upstream
) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 10000})
    with connect(proxy) as sock:
        sock.sendall(b"a")
        time.sleep(1.0)
        start = time.monotonic()
        api.patch("/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 10000}})
        assert recv_exactly(sock, 1) == b"a"
        assert time.monotonic() - start < 5  # not the 10 s of latency
        sock.sendall(b"b")  # what comes after is delayed as before
        assert_hangs(sock, 0.5)


def test_adding_a_toxic_restarts_the_timer_of_a_timeout_before_it(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="timeout", attributes={"timeout": 1000})
    with connect(proxy) as sock:
        time.sleep(0.3)
        added = time.monotonic()
        api.toxic("p", type="noop", name="n")
        assert_hangs(sock, 0.9)  # past the first timer's second
        assert sock.recv(1) == b""
        assert 0.95 <= time.monotonic() - added < 2


def test_toxicity_is_drawn_again_when_a_toxic_is_added_after_it(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", toxicity=0.5, attributes={"latency": 100})
    slow = 0
    with connect(proxy) as sock:
        for _ in range(16):  # one connection: all slow or all fast if drawn only once
            api.toxic("p", type="noop", name="n")
            slow += round_trip(sock) >= 0.09
            api.delete("/proxies/p/toxics/n")
    assert 0 < slow < 16


# -- slicer ------------------------------------------------------------------------------------


def test_slicer_negative_variation_lowers_the_size_it_stops_at(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    # Toxiproxy splits while size - average > variation: 10 bytes, average 10, variation -5
    # make two slices of 5 (300 ms apart), where a variation taken as 0 would make one.
    upstream = upstream_factory(_source(b"0123456789"))
    proxy = api.create("p", upstream.port)
    api.toxic(
        "p",
        type="slicer",
        attributes={"average_size": 10, "size_variation": -5, "delay": 300_000},
    )
    with connect(proxy) as sock:
        assert sock.recv(100) == b"01234"
        assert recv_exactly(sock, 5) == b"56789"
