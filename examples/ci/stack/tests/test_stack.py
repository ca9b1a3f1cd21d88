"""A plain suite against the example stack: HTTP only, no pytest-dcfire in sight.

API_URLS lists the api endpoints (east first); the client uses the first that answers, as a
client behind a failover load balancer would, and keeps using it while it answers. Every
request has a client timeout: a blackholed endpoint answers nothing, ever.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from typing import Any

URLS = os.environ.get("API_URLS", "http://127.0.0.1:8081 http://127.0.0.1:8082").split()
TIMEOUT = float(os.environ.get("API_TIMEOUT", "1.5"))
_preferred: list[str] = []


def call(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) from the first endpoint that answers; the last error if none."""
    error: Exception | None = None
    for url in dict.fromkeys(_preferred + URLS):
        request = urllib.request.Request(url + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        except OSError as exc:  # refused, reset, timed out: try the next endpoint
            error = exc
            continue
        _preferred[:] = [url]
        return status, json.loads(data)
    raise ConnectionError(f"no api endpoint answered {method} {path}: {error}")


def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


def test_an_api_is_healthy() -> None:
    status, body = call("GET", "/health")
    assert status == 200 and body["status"] == "ok"


def test_the_api_names_its_site() -> None:
    status, body = call("GET", "/site")
    assert status == 200 and body["site"] in ("east", "west")


def test_unknown_routes_are_404() -> None:
    assert call("GET", "/nowhere")[0] == 404


def test_write_then_read() -> None:
    k = key()
    assert call("PUT", f"/kv/{k}", b"hello")[0] == 200
    status, body = call("GET", f"/kv/{k}")
    assert (status, body["value"]) == (200, "hello")


def test_missing_key_is_404() -> None:
    assert call("GET", f"/kv/{key()}")[0] == 404


def test_counter_counts() -> None:
    k = key()
    for expected in (1, 2, 3):
        status, body = call("POST", f"/count/{k}")
        assert (status, body.get("value")) == (200, expected), body


def test_delete() -> None:
    k = key()
    call("PUT", f"/kv/{k}", b"x")
    assert call("DELETE", f"/kv/{k}") == (200, {"deleted": 1})
