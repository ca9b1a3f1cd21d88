"""The example stack's HTTP api: keys and counters kept in the store (store.py).

GET /health (the process is up), GET /site, PUT|GET|DELETE /kv/KEY, POST /count/KEY.
A store that does not answer within STORE_TIMEOUT seconds is a 503 naming it.
"""

from __future__ import annotations

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SITE = os.environ.get("SITE", "unknown")
STORE = os.environ.get("STORE", "cache:6379")
STORE_TIMEOUT = float(os.environ.get("STORE_TIMEOUT", "1.0"))


class StoreDown(Exception):
    pass


def command(*args: bytes) -> bytes | int | None:
    """Send one RESP command to the store; the reply as bytes, an int or None."""
    host, _, port = STORE.rpartition(":")
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    try:
        with socket.create_connection((host, int(port)), timeout=STORE_TIMEOUT) as sock:
            sock.sendall(request)
            stream = sock.makefile("rb")
            line = stream.readline()
            if line.startswith(b"$"):
                size = int(line[1:])
                return None if size < 0 else stream.read(size + 2)[:-2]
    except OSError as exc:
        raise StoreDown(f"store {STORE} unreachable from {SITE}: {exc}") from None
    if line.startswith(b":"):
        return int(line[1:])
    if line.startswith(b"-") or not line:
        raise StoreDown(f"store {STORE}: {line.decode(errors='replace').strip() or 'no reply'}")
    return line[1:].strip()


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method: str) -> None:
        kind, _, key = self.path.strip("/").partition("/")
        try:
            if method == "GET" and self.path == "/health":
                return self.reply(200, {"status": "ok", "site": SITE})
            if method == "GET" and self.path == "/site":
                return self.reply(200, {"site": SITE})
            if kind == "kv" and key and method == "PUT":
                size = int(self.headers.get("Content-Length", "0"))
                command(b"SET", key.encode(), self.rfile.read(size))
                return self.reply(200, {"key": key, "site": SITE})
            if kind == "kv" and key and method == "GET":
                value = command(b"GET", key.encode())
                if value is None:
                    return self.reply(404, {"error": f"no key {key}"})
                assert isinstance(value, bytes)
                return self.reply(200, {"key": key, "value": value.decode(), "site": SITE})
            if kind == "kv" and key and method == "DELETE":
                return self.reply(200, {"deleted": command(b"DEL", key.encode())})
            if kind == "count" and key and method == "POST":
                return self.reply(200, {"key": key, "value": command(b"INCR", key.encode())})
        except StoreDown as exc:
            return self.reply(503, {"error": str(exc), "site": SITE})
        return self.reply(404, {"error": f"no route {method} {self.path}"})

    def do_GET(self) -> None:
        self.route("GET")

    def do_PUT(self) -> None:
        self.route("PUT")

    def do_POST(self) -> None:
        self.route("POST")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Api).serve_forever()
