"""Proxies, their connections and the two one-way links of each connection.

A link forwards bytes straight from one socket to the other while it has no toxics (one
Python call per read, no task switch), and switches to a chain of toxic stubs as soon as a
toxic is added, so toxics can come and go on live connections as in Toxiproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from pytest_dcfire.toxiproxy.toxics import (
    Chunk,
    Direction,
    Eof,
    EofKind,
    Item,
    ResetPeerToxic,
    Stub,
    ToxicSpec,
    noop_pipe,
)

__all__ = [
    "Connection",
    "Link",
    "Proxy",
    "ProxyError",
    "bind_listener",
    "format_address",
    "split_host_port",
]

log = logging.getLogger("pytest_dcfire.toxiproxy")

#: A link stops reading its source while its toxics hold more than this many bytes ...
HIGH_WATER = 4 * 1024 * 1024
#: ... and reads again once they hold no more than this.
LOW_WATER = 1024 * 1024
#: How long a closed connection may take to flush what it still has to send.
CLOSE_GRACE = 5.0
#: Reads of up to this many bytes at a time. asyncio's default is 256 KiB; 1 MiB streams
#: about 30% faster here and costs a small read no more (4 MiB would).
READ_SIZE = 1024 * 1024

# Reasons a link's source is paused (bit flags).
_SINK_FULL = 1
_CHAIN_FULL = 2
_GATED = 4

_LINGER_ZERO = struct.pack("ii", 1, 0)


class ProxyError(Exception):
    """A proxy could not listen; the message reads like Toxiproxy's."""


def split_host_port(address: str) -> tuple[str, str]:
    """Split ``host:port`` (IPv6 hosts in brackets) the way Go's ``net.SplitHostPort`` does."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        return host, rest[1:]
    colon = address.rfind(":")
    if colon < 0:
        raise ValueError(f"address {address}: missing port in address")
    host, port = address[:colon], address[colon + 1 :]
    if ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    return host, port


_NUMERIC_PORT = re.compile(r"[+-]?[0-9]+")


def parse_port(port: str) -> int:
    """A port number or service name, with the errors Go's ``net.Listen`` gives."""
    if _NUMERIC_PORT.fullmatch(port):
        value = int(port)
        if not 0 <= value <= 65535:
            raise ValueError(f"address {port}: invalid port")
        return value
    if not port:
        return 0
    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise ValueError(f"address tcp/{port}: unknown port") from None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_STRICT_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def go_refuses_host(host: str) -> bool:
    """Whether ``host`` is an IPv4 shorthand the C resolver takes ("127.1", "0x7f.1",
    "127.0.0.01") but Go does not: Go looks it up as a name, and finds no such host."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return not _STRICT_IPV4.fullmatch(host)


def _lookup_reason(exc: OSError) -> str:
    """Go's words for a failed name lookup ("no such host"), else the resolver's own."""
    if isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_HOST:
        return "no such host"
    return (exc.strerror or str(exc)).lower()


_NO_SUCH_HOST = {
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
}


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def bind_listener(loop: asyncio.AbstractEventLoop, listen: str) -> socket.socket:
    """A listening, non-blocking socket for ``listen`` (one address, so port 0 is one port)."""
    try:
        # An empty address means every interface and any port, as for Go's net.Listen.
        host, port_text = split_host_port(listen) if listen else ("", "0")
        port = parse_port(port_text)
    except (ValueError, OSError) as exc:
        raise ProxyError(f"listen tcp: {exc}") from None
    candidates: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = []
    if go_refuses_host(host):
        raise ProxyError(f"listen tcp: lookup {host}: no such host")
    if host == "0.0.0.0":
        host = ""  # Go listens on both families for the IPv4 wildcard too ("[::]:port")
    if not host:
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, ("::", port)))
        candidates.append((socket.AF_INET, ("0.0.0.0", port)))
    else:
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            raise ProxyError(f"listen tcp: lookup {host}: {_lookup_reason(exc)}") from None
        # Like Go, prefer IPv4 when a name resolves to both families.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        candidates = [(info[0], info[4]) for info in infos]
    error: OSError | None = None
    for family, address in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            error = error or exc
            continue
        return sock
    reason = error.strerror if error is not None and error.strerror else str(error)
    raise ProxyError(f"listen tcp {listen}: bind: {reason.lower()}")


class _Side(asyncio.BaseProtocol):
    """One socket of a proxied connection: the accepted client, or the dialled upstream."""

    # Rebound by the link reading this side: the peer transport's ``write`` on the fast path
    # (asyncio then calls it directly, no frame of ours in between), ``Link.feed`` otherwise.
    data_received: Callable[[bytes], object]

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out_link: Link | None = None
        self.in_link: Link | None = None
        # What arrives before the link exists is kept for it (reading pauses at the first
        # bytes; pausing in connection_made is not enough on Python 3.10).
        self.early: list[bytes] = []
        self.early_eof = False
        self.data_received = self._hold

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.side_made(self)

    def _hold(self, data: bytes) -> None:
        self.early.append(data)
        if self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.out_link is not None:
            self.out_link.feed_eof(EofKind.SOFT)
        else:
            self.early_eof = True
        return True  # keep the other direction open: half-closes pass through

    def pause_writing(self) -> None:
        if self.in_link is not None:
            self.in_link.add_reason(_SINK_FULL)

    def resume_writing(self) -> None:
        if self.in_link is not None:
            self.in_link.clear_reason(_SINK_FULL)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(self, exc)


def _ignore(data: bytes) -> None:
    return None


class Link:
    """Bytes from one side of a connection to the other, through the direction's toxics."""

    __slots__ = (
        "conn",
        "direction",
        "dst",
        "eof_fed",
        "finished",
        "gated",
        "held",
        "input_closed",
        "loop",
        "pending",
        "reasons",
        "src",
        "stages",
        "write",
    )

    def __init__(self, conn: Connection, direction: Direction, src: _Side, dst: _Side) -> None:
        assert src.transport is not None and dst.transport is not None
        self.conn = conn
        self.loop = conn.loop
        self.direction = direction
        self.src = src
        self.dst = dst
        self.write = dst.transport.write
        self.stages: list[tuple[ToxicSpec, Stub]] = []
        self.pending: deque[Item] = deque()  # held at the sink while the link is gated
        self.held = 0  # bytes read but not yet handed to the sink transport
        self.reasons = 0
        self.gated = False
        self.eof_fed = False
        self.input_closed = False
        self.finished = False

    # -- set-up and routing ---------------------------------------------------------------

    def start(self, chain: list[ToxicSpec], gated: bool) -> None:
        self.gated = gated
        if gated:
            self.reasons |= _GATED
        for spec in chain:
            self._append(spec)
        self._route()
        src = self.src
        early, src.early = src.early, []
        for data in early:
            src.data_received(data)
        if src.early_eof:
            self.feed_eof(EofKind.SOFT)
        if self.reasons:
            self._pause_source()
        else:
            self._resume_source()

    def _route(self) -> None:
        if self.finished:
            self.src.data_received = _ignore
            return
        direct = not (
            self.stages or self.gated or self.pending or self.eof_fed or self.input_closed
        )
        self.src.data_received = self.write if direct else self.feed

    def _pause_source(self) -> None:
        t = self.src.transport
        if t is not None and not t.is_closing():
            t.pause_reading()

    def _resume_source(self) -> None:
        t = self.src.transport
        if t is not None and not t.is_closing():
            t.resume_reading()

    def add_reason(self, reason: int) -> None:
        if not self.reasons:
            self._pause_source()
        self.reasons |= reason

    def clear_reason(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons and not self.finished:
                self._resume_source()

    # -- data path ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes read from the source into the toxic chain (the slow path)."""
        if self.input_closed or self.finished:
            return
        self.held += len(data)
        item = Chunk(data, self.loop.time())
        if self.stages:
            self.stages[0][1].put(item)
        else:
            self.deliver(item)
        if self.held > HIGH_WATER and not self.reasons & _CHAIN_FULL:
            self.add_reason(_CHAIN_FULL)

    def feed_eof(self, kind: EofKind) -> None:
        if self.eof_fed:
            return
        self.eof_fed = True
        self._route()
        if self.input_closed or self.finished:
            return
        item = Eof(kind)
        if self.stages:
            self.stages[0][1].put(item)
        else:
            self.deliver(item)

    def deliver(self, item: Item) -> None:
        """The end of the chain: write to the sink, unless the link is gated (blackholed)."""
        if self.gated or self.pending:
            self.pending.append(item)
            return
        self._emit(item)

    def _emit(self, item: Item) -> None:
        if isinstance(item, Chunk):
            if not self.finished:
                self.write(item.data)
            self.release(len(item.data))
        else:
            self._finish(item.kind)

    def release(self, size: int) -> None:
        self.held -= size
        if self.reasons & _CHAIN_FULL and self.held <= LOW_WATER:
            self.clear_reason(_CHAIN_FULL)

    def _close_input(self) -> None:
        """A toxic ended the link: later reads from the source are dropped."""
        self.input_closed = True
        self._route()

    def _finish(self, kind: EofKind) -> None:
        if self.finished:
            return
        self.finished = True
        self.conn.link_finished(self, kind)

    # -- blackhole ----------------------------------------------------------------------------

    def set_gate(self, gated: bool) -> None:
        if gated == self.gated or self.finished:
            return
        self.gated = gated
        if gated:
            self.add_reason(_GATED)
            self._route()
            return
        while self.pending and not self.gated and not self.finished:
            self._emit(self.pending.popleft())
        self._route()
        self.clear_reason(_GATED)

    # -- toxics on a live link ------------------------------------------------------------

    def _append(self, spec: ToxicSpec) -> None:
        stub = Stub(
            self.loop,
            self.deliver,
            self.release,
            self._close_input,
            self.conn.proxy.rng,
            spec.toxic.new_state(),
        )
        if self.stages:
            self.stages[-1][1].out = stub.put
        self.stages.append((spec, stub))
        self._run(spec, stub)

    def _run(self, spec: ToxicSpec, stub: Stub) -> None:
        # As in Toxiproxy, toxicity is drawn for each link each time the toxic (re)starts.
        draw = stub.rng.random()
        pipe = spec.toxic.pipe(stub) if draw < spec.toxicity else noop_pipe(stub)
        stub.task = self.loop.create_task(self._guard(pipe, spec))

    async def _guard(self, pipe: Coroutine[Any, Any, None], spec: ToxicSpec) -> None:
        try:
            await pipe
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("toxic %s failed on a link of proxy %s", spec.name, self.conn.proxy.name)
            self.conn.close()

    # Toxiproxy interrupts the toxic before the one it adds or removes, to rewire its
    # output, and runs it again: that toxic passes on the chunk it was working on, restarts
    # (a timeout's timer, a bandwidth's pacing) and draws its toxicity anew, as on an update.

    def add_toxic(self, spec: ToxicSpec) -> None:
        if self.finished:
            return
        last = self.stages[-1] if self.stages else None
        # Interrupted before the rewiring, the last toxic flushes past the new one.
        restart = last is not None and last[1].interrupt(last[0].toxic)
        self._append(spec)
        if restart and last is not None and not self.finished:
            self._run(*last)
        self._route()

    def update_toxic(self, spec: ToxicSpec) -> None:
        for stage_spec, stub in self.stages:
            if stage_spec is spec:
                if stub.interrupt(spec.toxic) and not self.finished:
                    self._run(spec, stub)
                return

    def remove_toxic(self, spec: ToxicSpec) -> None:
        index = next((i for i, stage in enumerate(self.stages) if stage[0] is spec), None)
        if index is None:
            return
        stub = self.stages[index][1]
        if not stub.interrupt(spec.toxic):
            return  # it is about to end the link, as it does in Toxiproxy
        del self.stages[index]
        before = self.stages[index - 1] if index > 0 else None
        if before is not None:
            before[1].out = stub.out
        if not self.finished and not spec.toxic.on_remove(stub):
            # What the toxic still held moves on, in order, behind what already passed it.
            out = stub.out
            while stub.inq:
                out(stub.inq.popleft())
            if before is not None and before[1].interrupt(before[0].toxic) and not self.finished:
                self._run(*before)
        self._route()

    def stop(self) -> None:
        """Stop for good: cancel the toxics, forget held data."""
        self.finished = True
        self.src.data_received = _ignore
        for _, stub in self.stages:
            stub.cancel()
        self.stages.clear()
        self.pending.clear()


class Connection:
    """A client connection and its upstream connection, joined by two links."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.client = _Side(self)
        self.upstream = _Side(self)
        self.up: Link | None = None
        self.down: Link | None = None
        self.dial_task: asyncio.Task[None] | None = None
        self.waiting = False
        self.closed = False
        #: Started with a reset_peer toxic: every close is a reset (see ``_wire``).
        self.linger_zero = False

    # -- life cycle ---------------------------------------------------------------------------

    def side_made(self, side: _Side) -> None:
        if side is not self.client:
            return
        if not self.proxy.enabled:
            self.abort()
            return
        self.proxy.connections.add(self)
        if self.proxy.blackhole:
            # Accepted but silent: no upstream connection until the blackhole lifts.
            self.waiting = True
        else:
            self.dial()

    def dial(self) -> None:
        self.waiting = False
        self.dial_task = self.loop.create_task(self._dial())

    async def _dial(self) -> None:
        try:
            host, port_text = split_host_port(self.proxy.upstream)
            port = parse_port(port_text)
            if go_refuses_host(host):
                raise OSError(f"lookup {host}: no such host")
            await self.loop.create_connection(lambda: self.upstream, host or "localhost", port)
        except (OSError, ValueError) as exc:
            self.dial_task = None
            log.warning(
                "proxy %s: unable to open connection to upstream %s: %s",
                self.proxy.name,
                self.proxy.upstream,
                exc,
            )
            self.close()  # as Toxiproxy does: the client sees its connection closed
            return
        finally:
            self.dial_task = None
        if self.closed:
            if self.upstream.transport is not None:
                self.upstream.transport.abort()
            return
        self._wire()

    def _wire(self) -> None:
        client, upstream = self.client, self.upstream
        up = Link(self, Direction.UPSTREAM, client, upstream)
        down = Link(self, Direction.DOWNSTREAM, upstream, client)
        self.up, self.down = up, down
        client.out_link = upstream.in_link = up
        upstream.out_link = client.in_link = down
        for transport in (client.transport, upstream.transport):
            assert transport is not None
            # The selector transports' read size; other transports ignore the attribute.
            transport.max_size = READ_SIZE  # type: ignore[attr-defined]
        if any(isinstance(spec.toxic, ResetPeerToxic) for spec in self.proxy.toxics):
            self._set_linger_zero()
        gated = self.proxy.blackhole
        up.start(self.proxy.chain(Direction.UPSTREAM), gated)
        down.start(self.proxy.chain(Direction.DOWNSTREAM), gated)

    def _set_linger_zero(self) -> None:
        """SO_LINGER 0 on both sockets, for the connection's life, so that closing either
        sends a TCP RST. Toxiproxy does this when a link starts with a reset_peer toxic in its
        chain (whatever its toxicity draw, and whichever the direction), and only then: the
        sockets keep it after the toxic is removed, and a reset_peer added to an open
        connection closes it with a FIN. Like Toxiproxy, every end of stream then closes the
        connection rather than passing a half-close on, so the peers see the reset."""
        self.linger_zero = True
        for side in (self.client, self.upstream):
            sock = side.transport.get_extra_info("socket") if side.transport else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)

    def links(self) -> tuple[Link, ...]:
        return tuple(link for link in (self.up, self.down) if link is not None)

    def link(self, direction: Direction) -> Link | None:
        return self.up if direction is Direction.UPSTREAM else self.down

    def set_gate(self, gated: bool) -> None:
        if self.closed:
            return
        if self.up is None:
            if not gated and self.waiting:
                self.dial()
            return
        for link in self.links():
            link.set_gate(gated)

    def link_finished(self, link: Link, kind: EofKind) -> None:
        if self.closed:
            return
        other = self.down if link is self.up else self.up
        if kind is EofKind.HARD or self.linger_zero or other is None or other.finished:
            self.close()
            return
        transport = link.dst.transport
        try:
            if transport is not None and transport.can_write_eof():
                transport.write_eof()
            else:
                self.close()
        except (OSError, RuntimeError):
            self.close()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if self.closed:
            return
        out_link, in_link = side.out_link, side.in_link
        if out_link is None or in_link is None:
            self.close()
            return
        in_link.stop()  # nothing can reach this side any more
        if out_link.finished:
            self.close()
        elif not out_link.eof_fed:
            out_link.feed_eof(EofKind.HARD)

    # -- endings --------------------------------------------------------------------------

    def _end(self) -> list[asyncio.Transport]:
        self.closed = True
        self.proxy.connections.discard(self)
        for link in self.links():
            link.stop()
        if self.dial_task is not None:
            self.dial_task.cancel()
            self.dial_task = None
        return [
            side.transport
            for side in (self.client, self.upstream)
            if side.transport is not None and not side.transport.is_closing()
        ]

    def close(self) -> None:
        """Close both sockets gracefully (what is buffered is still sent, then FIN)."""
        if self.closed:
            return
        for transport in self._end():
            transport.close()
            if transport.get_write_buffer_size():
                self.loop.call_later(CLOSE_GRACE, transport.abort)

    def abort(self) -> None:
        """Close both sockets now, dropping what is buffered (a disabled proxy does this)."""
        if self.closed:
            return
        for transport in self._end():
            transport.abort()


class Proxy:
    """One listening address forwarding to one upstream, with its toxics and connections."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        listen: str,
        upstream: str,
        rng: random.Random,
    ) -> None:
        self.loop = loop
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.rng = rng
        self.enabled = False
        #: Our extension: hold every byte and every new connection (see the package docs).
        self.blackhole = False
        self.toxics: list[ToxicSpec] = []
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    # -- listening ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; ``listen`` becomes the bound address (so port 0 reports the real port)."""
        if self.enabled:
            return
        sock = await self._bind()
        try:
            server = await self.loop.create_server(
                lambda: Connection(self).client, sock=sock, backlog=1024
            )
        except BaseException:
            sock.close()
            raise
        self._server = server
        host, port = sock.getsockname()[:2]
        self.listen = format_address(host, port)
        self.enabled = True
        log.debug("proxy %s listening on %s", self.name, self.listen)

    async def _bind(self) -> socket.socket:
        return await bind_listener(self.loop, self.listen)

    def stop(self) -> None:
        """Stop listening and drop every connection, as disabling a Toxiproxy proxy does."""
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.abort()
        log.debug("proxy %s stopped", self.name)

    # -- toxics and the blackhole -----------------------------------------------------------

    def chain(self, direction: Direction) -> list[ToxicSpec]:
        return [spec for spec in self.toxics if spec.direction is direction]

    def find_toxic(self, name: str) -> ToxicSpec | None:
        for spec in self.toxics:
            if spec.name == name:
                return spec
        return None

    def toxics_in_order(self) -> list[ToxicSpec]:
        """Upstream toxics first, then downstream, each in the order they were added."""
        return self.chain(Direction.UPSTREAM) + self.chain(Direction.DOWNSTREAM)

    def _live_links(self, direction: Direction) -> list[Link]:
        links = []
        for conn in self.connections:
            link = conn.link(direction)
            if link is not None:
                links.append(link)
        return links

    def add_toxic(self, spec: ToxicSpec) -> None:
        self.toxics.append(spec)
        for link in self._live_links(spec.direction):
            link.add_toxic(spec)

    def update_toxic(self, spec: ToxicSpec) -> None:
        for link in self._live_links(spec.direction):
            link.update_toxic(spec)

    def remove_toxic(self, spec: ToxicSpec) -> None:
        self.toxics.remove(spec)
        for link in self._live_links(spec.direction):
            link.remove_toxic(spec)

    def reset_toxics(self) -> None:
        for spec in self.toxics_in_order():
            self.remove_toxic(spec)

    def set_blackhole(self, on: bool) -> None:
        if on == self.blackhole:
            return
        self.blackhole = on
        for conn in list(self.connections):
            conn.set_gate(on)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [spec.to_json() for spec in self.toxics_in_order()],
            "blackhole": self.blackhole,
        }
