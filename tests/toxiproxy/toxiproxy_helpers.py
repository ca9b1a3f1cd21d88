"""Helpers for the embedded Toxiproxy tests: raw HTTP, small upstream servers, socket checks.

A module of its own (not conftest) so test modules can import it by a name unique in the tree.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How long a test waits before concluding that nothing is coming (a hang).
HANG = 0.3


@dataclass
class HttpResult:
    """Status, headers (lower-cased names) and body of one raw API call."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Raw HTTP to the server, for the status codes and bodies toxiproxy-python hides."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __call__(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            data = raw if raw is not None else None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            return HttpResult(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            conn.close()

    def create(self, name: str, upstream: int | str, **fields: object) -> dict[str, Any]:
        target = f"127.0.0.1:{upstream}" if isinstance(upstream, int) else upstream
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": target, **fields}
        result = self("POST", "/proxies", body)
        assert result.status == 201, result.body
        proxy: dict[str, Any] = result.json()
        return proxy

    def toxic(self, proxy: str, **fields: object) -> dict[str, Any]:
        result = self("POST", f"/proxies/{proxy}/toxics", fields)
        assert result.status == 200, result.body
        toxic: dict[str, Any] = result.json()
        return toxic

    def patch(self, path: str, body: object) -> dict[str, Any]:
        result = self("PATCH", path, body)
        assert result.status == 200, result.body
        value: dict[str, Any] = result.json()
        return value

    def delete(self, path: str) -> None:
        result = self("DELETE", path)
        assert result.status == 204, result.body


@dataclass(frozen=True)
class ServerUnderTest:
    """The server the API tests talk to, and whether it is ours (GET /version says so)."""

    host: str
    port: int
    ours: bool


# -- upstream servers -----------------------------------------------------------------------


@dataclass
class Upstream:
    """A TCP server on 127.0.0.1 that runs ``handler`` in a thread for each connection."""

    handler: Callable[[socket.socket], None]
    accepted: int = 0
    received: bytearray = field(default_factory=bytearray)
    _listener: socket.socket = field(init=False)
    _conns: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self.handler(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def echo_handler(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


# -- client-side helpers ----------------------------------------------------------------------


def address(proxy: dict[str, Any]) -> tuple[str, int]:
    host, port = str(proxy["listen"]).rsplit(":", 1)
    return host.strip("[]"), int(port)


def connect(proxy: dict[str, Any], timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address(proxy), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(size - len(chunks))
        if not data:
            raise EOFError(f"EOF after {len(chunks)} of {size} bytes")
        chunks.extend(data)
    return bytes(chunks)


def recv_all(sock: socket.socket) -> bytes:
    chunks = bytearray()
    while data := sock.recv(65536):
        chunks.extend(data)
    return bytes(chunks)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def assert_hangs(sock: socket.socket, wait: float = HANG) -> None:
    """Nothing arrives within ``wait``: no data, no end of stream, no reset."""
    sock.settimeout(wait)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return
    finally:
        sock.settimeout(5.0)
    raise AssertionError(f"expected a hang, got {data!r}")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
