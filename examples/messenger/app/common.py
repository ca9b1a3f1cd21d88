"""What the three messenger services share: a JSON HTTP server, a JSON HTTP client, tokens.

Each instance learns its site from `DCFIRE_SITE` (set by pytest-dcfire on every container),
so one topology entry `site: [pangyo, ansan]` with one environment serves both sites; values
may say `{site}` to mean "the site this instance runs in" (`http://store.{site}:8080`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SITE = os.environ.get("DCFIRE_SITE", "local")
PORT = 8080


def setting(name: str, default: str = "") -> str:
    """An environment value with `{site}` replaced by this instance's site."""
    return os.environ.get(name, default).replace("{site}", SITE)


class Unavailable(Exception):
    """A dependency did not answer in time (or refused): the caller answers 503."""


def call(url: str, method: str = "GET", body: Any = None, timeout: float = 1.0) -> Any:
    """One JSON request to another service; raises Unavailable when it cannot be reached."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(
            method, parts.path or "/", body=data, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"{parts.hostname}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if response.status >= 500:
        raise Unavailable(f"{parts.hostname} answered {response.status}")
    return response.status, json.loads(payload or b"null")


def sign(user: str, secret: str, ttl: float = 3600.0) -> str:
    """A stateless session token: any api instance can check it without asking auth."""
    claims = base64.urlsafe_b64encode(json.dumps({"user": user, "exp": time.time() + ttl}).encode())
    mac = hmac.new(secret.encode(), claims, hashlib.sha256).hexdigest()
    return f"{claims.decode()}.{mac}"


def verify(token: str, secret: str) -> str | None:
    """The user a token was issued to, or None if it is forged or expired."""
    claims, _, mac = token.partition(".")
    good = hmac.new(secret.encode(), claims.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, good):
        return None
    data = json.loads(base64.urlsafe_b64decode(claims))
    return str(data["user"]) if data["exp"] > time.time() else None


class JsonHandler(BaseHTTPRequestHandler):
    """Routes `METHOD /path` to `route(method, path, body)` returning (status, json)."""

    protocol_version = "HTTP/1.1"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, answer = 400, {"error": "body is not JSON"}
        else:
            try:
                status, answer = self.route(method, self.path, body)
            except Unavailable as exc:
                status, answer = 503, {"error": str(exc), "site": SITE}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Site", SITE)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[JsonHandler], what: str) -> None:
    print(f"{what} in {SITE} on :{PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), handler).serve_forever()
