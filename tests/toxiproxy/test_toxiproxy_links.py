"""Real bytes through embedded proxies: every toxic, live changes, disabling and resetting.

Timings are sanity tolerances only (a 100 ms latency adds at least 90 ms), never targets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toxiproxy_helpers import (
    Api,
    ServerUnderTest,
    Upstream,
    assert_hangs,
    connect,
    recv_all,
    recv_exactly,
    round_trip,
    wait_for,
)

UpstreamFactory = Callable[[Callable[[socket.socket], None]], Upstream]


def _source(payload: bytes) -> Callable[[socket.socket], None]:
    """An upstream that sends ``payload`` as soon as a client arrives, then closes."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    return handler


def test_plain_forwarding_large_payload(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    payload = os.urandom(4 << 20)
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(min_size=1, max_size=20_000),
    average=st.integers(1, 64),
    variation=st.integers(0, 32),
)
def test_slicer_keeps_data_intact(
    api: Api, echo: Upstream, payload: bytes, average: int, variation: int
) -> None:
    if "p" not in api("GET", "/proxies").json():
        api.create("p", echo.port)
        api.toxic("p", type="slicer", name="up", stream="upstream", attributes={"average_size": 7})
        api.toxic("p", type="slicer", name="down")
    api.patch(
        "/proxies/p/toxics/down",
        {"attributes": {"average_size": average, "size_variation": variation}},
    )
    with connect(api("GET", "/proxies/p").json()) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_slicer_delay_slices_the_stream(api: Api, upstream_factory: UpstreamFactory) -> None:
    payload = bytes(range(200))
    upstream = upstream_factory(_source(payload))
    proxy = api.create("p", upstream.port)
    api.toxic(
        "p", type="slicer", attributes={"average_size": 10, "size_variation": 0, "delay": 20_000}
    )
    with connect(proxy) as sock:
        start = time.monotonic()
        reads = []
        while data := sock.recv(1000):
            reads.append(data)
        elapsed = time.monotonic() - start
    assert b"".join(reads) == payload
    assert len(reads) >= 10  # 20 slices, 20 ms apart: they cannot all arrive in one read
    assert elapsed >= 0.3


def test_latency(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        # Without the toxic a round trip is well under its 100 ms (the best of three: one
        # slow trip on a loaded machine says nothing about the proxy).
        assert min(round_trip(sock) for _ in range(3)) < 0.09
        api.toxic("p", type="latency", attributes={"latency": 100})
        assert round_trip(sock) >= 0.09
        api.toxic("p", type="latency", name="up", stream="upstream", attributes={"latency": 100})
        assert round_trip(sock) >= 0.19


def test_latency_jitter_stays_within_bounds(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 60, "jitter": 30})
    with connect(proxy) as sock:
        times = [round_trip(sock) for _ in range(5)]
    assert all(0.028 <= t < 0.5 for t in times), times


def test_bandwidth(api: Api, upstream_factory: UpstreamFactory) -> None:
    payload = os.urandom(50_000)
    upstream = upstream_factory(_source(payload))
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="bandwidth", attributes={"rate": 100})  # 100 KB/s
    with connect(proxy) as sock:
        start = time.monotonic()
        assert recv_all(sock) == payload
        elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 2.0, elapsed


def test_limit_data_closes_after_the_limit(api: Api, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(_source(bytes(1000)))
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="limit_data", attributes={"bytes": 100})
    with connect(proxy) as sock:
        assert len(recv_all(sock)) == 100


def test_limit_data_upstream_counts_across_writes(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="limit_data", stream="upstream", attributes={"bytes": 10})
    with connect(proxy) as sock:
        assert round_trip(sock, b"12345") < 1
        sock.sendall(b"6789abcdef")
        # The upstream side closes after 10 bytes; its echo of them may or may not make it.
        assert b"6789a".startswith(recv_all(sock))
    wait_for(lambda: bytes(echo.received) == b"123456789a")


def test_timeout_closes_after_the_timeout(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="timeout", attributes={"timeout": 200})
    with connect(proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"dropped")
        assert sock.recv(10) == b""
        assert 0.18 <= time.monotonic() - start < 2


def test_timeout_zero_holds_forever_until_removed(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        round_trip(sock)
        api.toxic("p", type="timeout", attributes={"timeout": 0})
        sock.sendall(b"x")
        assert_hangs(sock, 0.5)  # no data, no EOF, no reset
        api.delete("/proxies/p/toxics/timeout_downstream")
        # Like Toxiproxy: removing a timeout toxic closes the connections it held.
        assert sock.recv(1) == b""


def test_reset_peer(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="reset_peer", attributes={"timeout": 0})
    with connect(proxy) as sock:
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_reset_peer_after_timeout(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="reset_peer", stream="upstream", attributes={"timeout": 200})
    with connect(proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        assert time.monotonic() - start >= 0.18


@pytest.mark.parametrize("delay", [0, 300])
def test_slow_close(api: Api, upstream_factory: UpstreamFactory, delay: int) -> None:
    upstream = upstream_factory(_source(b"bye"))
    proxy = api.create("p", upstream.port)
    api.toxic("p", type="slow_close", attributes={"delay": delay})
    with connect(proxy) as sock:
        assert recv_exactly(sock, 3) == b"bye"
        start = time.monotonic()
        assert sock.recv(1) == b""
        elapsed = time.monotonic() - start
    if delay:
        assert elapsed >= 0.28
    else:
        assert elapsed < 0.2


def test_toxicity_zero_and_one(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", toxicity=0, attributes={"latency": 200})
    with connect(proxy) as sock:
        assert round_trip(sock) < 0.15
    api.patch("/proxies/p/toxics/latency_downstream", {"toxicity": 1})
    with connect(proxy) as sock:
        assert round_trip(sock) >= 0.18


def test_toxicity_is_drawn_per_connection(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", toxicity=0.5, attributes={"latency": 100})
    slow = 0
    for _ in range(12):
        with connect(proxy) as sock:
            slow += round_trip(sock) >= 0.09
    assert 0 < slow < 12


def test_live_add_update_remove(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        # Without the toxic a round trip is well under its 100 ms (the best of three: one
        # slow trip on a loaded machine says nothing about the proxy).
        assert min(round_trip(sock) for _ in range(3)) < 0.09
        api.toxic("p", type="latency", attributes={"latency": 100})
        assert round_trip(sock) >= 0.09
        api.patch("/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 250}})
        assert round_trip(sock) >= 0.24
        api.delete("/proxies/p/toxics/latency_downstream")
        assert round_trip(sock) < 0.05


def test_removing_a_toxic_releases_what_it_held(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 5000})
    with connect(proxy) as sock:
        sock.sendall(b"held")
        time.sleep(0.1)
        start = time.monotonic()
        api.delete("/proxies/p/toxics/latency_downstream")
        assert recv_exactly(sock, 4) == b"held"
        assert time.monotonic() - start < 1


def test_disabling_closes_listener_and_connections(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    sock = connect(proxy)
    round_trip(sock)
    api.patch("/proxies/p", {"enabled": False})
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    api.patch("/proxies/p", {"enabled": True})
    with connect(proxy) as sock:
        round_trip(sock)


def test_deleting_closes_connections(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        round_trip(sock)
        api.delete("/proxies/p")
        assert sock.recv(1) == b""


def test_reset_endpoint_on_live_connection(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        api.toxic("p", type="latency", attributes={"latency": 150})
        assert round_trip(sock) >= 0.14
        assert api("POST", "/reset").status == 204
        assert round_trip(sock) < 0.05


def test_unreachable_upstream_closes_the_client(api: Api) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead = placeholder.getsockname()[1]  # bound, never listening: refused
        proxy = api.create("p", dead)
        with connect(proxy) as sock:
            assert sock.recv(1) == b""


@pytest.mark.embedded_only(
    "a real Toxiproxy closes the upstream socket fully at the client's EOF (link.go: "
    "dest.Close()), so the reply races the close; ours passes the half-close through"
)
def test_half_close_passes_through(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    with connect(proxy) as sock:
        sock.sendall(b"request")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"request"


def test_upstream_reset_ends_the_client_connection(
    api: Api, upstream_factory: UpstreamFactory
) -> None:
    def rst(conn: socket.socket) -> None:
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    upstream = upstream_factory(rst)
    proxy = api.create("p", upstream.port)
    with connect(proxy) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b""


def test_many_concurrent_connections(api: Api, echo: Upstream) -> None:
    proxy = api.create("p", echo.port)
    api.toxic("p", type="latency", attributes={"latency": 50})
    results: list[bool] = []

    def one(i: int) -> None:
        with connect(proxy) as sock:
            payload = os.urandom(1000 + i)
            sock.sendall(payload)
            results.append(recv_exactly(sock, len(payload)) == payload)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 40
    assert time.monotonic() - start < 3  # connections do not wait for each other
    wait_for(lambda: echo.accepted == 40)


@pytest.mark.parametrize("toxic", [None, "latency"])
def test_slow_reader_throttles_the_upstream(
    api: Api,
    upstream_factory: UpstreamFactory,
    server_under_test: ServerUnderTest,
    toxic: str | None,
) -> None:
    sent = 0
    total = 2048 * 65536  # 128 MiB, if nothing pushed back

    def flood(conn: socket.socket) -> None:
        nonlocal sent
        block = bytes(65536)
        for _ in range(total // len(block)):
            conn.sendall(block)
            sent += len(block)

    upstream = upstream_factory(flood)
    proxy = api.create("p", upstream.port)
    if toxic:
        api.toxic("p", type=toxic, attributes={"latency": 1})
    with connect(proxy) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        # The client reads nothing: the upstream must stall, well before everything is sent.
        # (A real Toxiproxy stalls at ~6 MiB, ~38 MiB behind a latency toxic's 1024-chunk
        # buffer; ours at ~10 MiB: kernel buffers and the proxy's high-water mark.)
        time.sleep(0.5)
        while True:
            before = sent
            time.sleep(0.3)
            if sent == before:
                break
        assert sent < total
        if server_under_test.ours:
            assert sent < 32 << 20
        assert len(recv_exactly(sock, 1 << 20)) == 1 << 20  # and it flows again on reading
