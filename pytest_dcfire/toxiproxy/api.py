"""Toxiproxy's HTTP API (2.x) on asyncio: routes, JSON shapes, defaults and status codes.

Clients written for Toxiproxy (toxiproxy-python, the Go client, toxiproxy-cli) must not be
able to tell the difference, so request bodies are read with the leniency of Go's JSON
decoder (case-insensitive keys, unknown keys ignored, ``null`` meaning "leave as is") and
errors carry Toxiproxy's messages and codes.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import http
import json
import logging
import math
import os
import random
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from pytest_dcfire.toxiproxy import gojson
from pytest_dcfire.toxiproxy.proxy import (
    Proxy,
    ProxyError,
    parse_port,
    split_host_port,
)
from pytest_dcfire.toxiproxy.toxics import TOXIC_TYPES, Direction, ToxicSpec

__all__ = ["TOXIPROXY_API_VERSION", "ApiError", "ApiHandler", "HttpServer", "Request", "Response"]

log = logging.getLogger("pytest_dcfire.toxiproxy")

#: The Toxiproxy release whose HTTP API this server implements.
TOXIPROXY_API_VERSION = "2.12.0"

_MAX_BODY = 16 * 1024 * 1024
_MAX_HEAD = 64 * 1024


class ApiError(Exception):
    """An error answer: Toxiproxy's ``{"error": ..., "status": ...}`` body."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


def _bad_body(reason: str) -> ApiError:
    return ApiError(f"bad request body: {reason}", 400)


_NOT_FOUND = ApiError("proxy not found", 404)
#: How Go names the anonymous struct Toxiproxy decodes a toxic update into.
_TOXIC_UPDATE_TYPE = (
    'struct { Attributes interface {} "json:\\"attributes\\""; '
    'Toxicity float32 "json:\\"toxicity\\"" }'
)
_TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


@dataclass
class Request:
    """An HTTP request, read whole (API bodies are small)."""

    method: str
    path: str  # percent-decoded, as Go's ``URL.Path``
    headers: dict[str, str]
    body: bytes = b""
    query: str = ""


@dataclass
class Response:
    """An HTTP response; ``content_type`` None sends no Content-Type, as Go does for 204/405."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


# -- JSON, read as leniently as Go's encoding/json and written as compactly --------------------


def decode_json(body: bytes) -> object:
    """Decode the first JSON value of a request body (Go ignores what follows it)."""
    try:
        return gojson.decode(body)
    except gojson.JsonSyntaxError as exc:
        raise _bad_body(str(exc)) from None


_MAX_FLOAT32 = 3.4028234663852886e38
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def to_float32(value: float) -> float:
    """``value`` as Go's float32 holds it, spelled as Go prints it (0.3333 -> 0.33333334)."""
    rounded = struct.unpack("f", struct.pack("f", value))[0]
    if rounded == 0 or not math.isfinite(rounded):
        return float(rounded)
    for digits in range(1, 10):
        short = float(f"{rounded:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == rounded:
            return short
    return float(rounded)


def encode_json(value: object) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # Go escapes these even inside strings; they never occur outside strings in JSON.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _as_object(value: object, go_type: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_body(f"json: cannot unmarshal {_kind(value)} into Go value of type {go_type}")
    return value


def _field(obj: dict[str, object], name: str) -> object:
    """The value for ``name``; like Go, an exact key wins, else any letter case matches."""
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if key.lower() == name:
            return value
    return None


def _type_error(value: object, where: str, name: str, go_type: str) -> ApiError:
    return _bad_body(
        f"json: cannot unmarshal {_kind(value)} into Go struct field {where}.{name} "
        f"of type {go_type}"
    )


def _get_str(obj: dict[str, object], name: str, where: str) -> str | None:
    value = _field(obj, name)
    if value is None or isinstance(value, str):
        return value
    raise _type_error(value, where, name, "string")


def _get_bool(obj: dict[str, object], name: str, where: str) -> bool | None:
    value = _field(obj, name)
    if value is None or isinstance(value, bool):
        return value
    raise _type_error(value, where, name, "bool")


def _get_float(obj: dict[str, object], name: str, where: str) -> float | None:
    value = _field(obj, name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not abs(value) <= _MAX_FLOAT32:  # Go refuses what float32 cannot hold
            raise _bad_body(
                f"json: cannot unmarshal number {gojson.literal(value)} into Go struct field "
                f"{where}.{name} of type float32"
            )
        return to_float32(float(value))
    raise _type_error(value, where, name, "float32")


def _get_int(obj: dict[str, object], name: str, where: str) -> int | None:
    value = _field(obj, name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX:
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _bad_body(
            f"json: cannot unmarshal number {gojson.literal(value)} into Go struct field "
            f"{where}.{name} of type int64"
        )
    raise _type_error(value, where, name, "int64")


def _parse_attributes(
    toxic_type: str, raw: object, base: dict[str, int] | None = None
) -> dict[str, int]:
    cls = TOXIC_TYPES[toxic_type]
    attributes = dict(base) if base is not None else dict.fromkeys(cls.fields, 0)
    obj = _as_object(raw, f"toxics.{cls.__name__}")
    for name in cls.fields:
        value = _get_int(obj, name, f"{cls.go_name}.attributes")
        if value is not None:
            attributes[name] = value
    return attributes


def clean_path(path: str) -> str:
    """gorilla/mux's cleanPath: Go's ``path.Clean``, keeping a trailing slash."""
    if not path.startswith("/"):
        path = "/" + path
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    clean = "/" + "/".join(parts)
    if path.endswith("/") and clean != "/":
        clean += "/"
    return clean


def _request_id() -> str:
    """A 20-character id in base32hex, like the xid Toxiproxy puts in X-Toxiproxy-Request-Id."""
    return base64.b32hexencode(os.urandom(12)).decode().rstrip("=").lower()


# -- the API itself ------------------------------------------------------------------------


Handler = Callable[..., Awaitable[Response]]


def _json_response(status: int, value: object) -> Response:
    return Response(status, encode_json(value))


def _error_response(error: ApiError) -> Response:
    # Toxiproxy answers errors through Go's http.Error: text/plain, a trailing newline.
    return Response(
        error.status,
        encode_json(error.to_json()) + b"\n",
        "text/plain; charset=utf-8",
        {"X-Content-Type-Options": "nosniff"},
    )


class ApiHandler:
    """The proxy collection and the endpoints that change it; runs on the proxies' loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random) -> None:
        self.loop = loop
        self.rng = rng
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
            (("version",), {"GET": self.version}),
            (("reset",), {"POST": self.reset}),
            (("populate",), {"POST": self.populate}),
            (("proxies",), {"GET": self.proxy_index, "POST": self.proxy_create}),
            (
                ("proxies", "*"),
                {
                    "GET": self.proxy_show,
                    "POST": self.proxy_update,
                    "PATCH": self.proxy_update,
                    "DELETE": self.proxy_delete,
                },
            ),
            (("proxies", "*", "toxics"), {"GET": self.toxic_index, "POST": self.toxic_create}),
            (
                ("proxies", "*", "toxics", "*"),
                {
                    "GET": self.toxic_show,
                    "POST": self.toxic_update,
                    "PATCH": self.toxic_update,
                    "DELETE": self.toxic_delete,
                },
            ),
        ]

    async def dispatch(self, request: Request) -> Response:
        # gorilla/mux first redirects to the cleaned path (no //, . or ..), for any method.
        clean = clean_path(request.path)
        if clean != request.path:
            location = quote(clean, safe="/$&+,:;=@")
            if request.query:
                location += f"?{request.query}"
            return Response(301, b"", None, {"Location": location})
        # Routes match the decoded path, so a name holding "/" matches no route (as in mux).
        segments = request.path.split("/")[1:]
        for pattern, methods in self._routes:
            if len(pattern) != len(segments):
                continue
            args: list[str] = []
            for want, got in zip(pattern, segments, strict=True):
                if want == "*":
                    if not got:
                        break
                    args.append(got)
                elif want != got:
                    break
            else:
                handler = methods.get(request.method)
                if handler is None:
                    return Response(405, b"", None)
                response = await self._handle(request, handler, args)
                # Toxiproxy's middleware tags every answer of a matched route.
                response.headers["X-Toxiproxy-Request-Id"] = _request_id()
                return response
        return Response(
            404,
            b"404 page not found\n",
            "text/plain; charset=utf-8",
            {"X-Content-Type-Options": "nosniff"},
        )

    async def _handle(self, request: Request, handler: Handler, args: list[str]) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(
                403,
                b"User agent not allowed\n",
                "text/plain; charset=utf-8",
                {"X-Content-Type-Options": "nosniff"},
            )
        try:
            if request.method == "GET":
                return await handler(request, *args)
            async with self._lock:
                return await handler(request, *args)
        except ApiError as error:
            return _error_response(error)

    def _proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise _NOT_FOUND
        return proxy

    async def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()

    # -- endpoints ----------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        body = json.dumps({"version": TOXIPROXY_API_VERSION, "implementation": "pytest-dcfire"})
        return Response(200, body.encode() + b"\n", "application/json;charset=utf-8")

    async def proxy_index(self, request: Request) -> Response:
        return _json_response(
            200, {name: self.proxies[name].to_json() for name in sorted(self.proxies)}
        )

    async def proxy_create(self, request: Request) -> Response:
        obj = _as_object(decode_json(request.body), "toxiproxy.Proxy")
        name = _get_str(obj, "name", "Proxy") or ""
        listen = _get_str(obj, "listen", "Proxy") or ""
        upstream = _get_str(obj, "upstream", "Proxy") or ""
        enabled = _get_bool(obj, "enabled", "Proxy")
        blackhole = _get_bool(obj, "blackhole", "Proxy")
        if not name:
            raise ApiError("missing required field: name", 400)
        if not upstream:
            raise ApiError("missing required field: upstream", 400)
        if name in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = Proxy(self.loop, name, listen, upstream, self.rng)
        proxy.blackhole = bool(blackhole)
        if enabled is None or enabled:
            await self._start(proxy)
        self.proxies[name] = proxy
        log.info(
            "created proxy %s listen=%s upstream=%s enabled=%s%s",
            name,
            proxy.listen,
            upstream,
            _flag(proxy.enabled),
            " blackhole=true" if proxy.blackhole else "",
        )
        return _json_response(201, proxy.to_json())

    async def _start(self, proxy: Proxy) -> None:
        try:
            await proxy.start()
        except ProxyError as exc:
            raise ApiError(str(exc), 500) from None

    async def _listen_differs(self, proxy: Proxy, listen: str) -> bool:
        if not listen:
            return True  # Go resolves "" to ":0", which no bound address equals
        if listen == proxy.listen:
            return False
        try:
            host, port_text = split_host_port(listen)
            port = parse_port(port_text)
            current_host, current_port_text = split_host_port(proxy.listen)
            current_port = parse_port(current_port_text)
        except (ValueError, OSError) as exc:
            raise ApiError(str(exc), 500) from None
        if port != current_port or port == 0:
            return True
        if not host or host in ("0.0.0.0", "::"):
            return current_host not in ("", "0.0.0.0", "::")
        try:
            infos = await self.loop.getaddrinfo(host, port)
        except OSError as exc:
            raise ApiError(f"lookup {host}: {exc}", 500) from None
        return all(info[4][0] != current_host for info in infos)

    async def populate(self, request: Request) -> Response:
        created: list[Proxy] = []
        try:
            value = decode_json(request.body)
            if value is not None and not isinstance(value, list):
                raise _bad_body(
                    f"json: cannot unmarshal {_kind(value)} into Go value of type "
                    '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
                )
            entries = []
            for index, item in enumerate(value or [], start=1):
                obj = _as_object(item, "struct { toxiproxy.Proxy }")
                name = _get_str(obj, "name", "Proxy") or ""
                listen = _get_str(obj, "listen", "Proxy") or ""
                upstream = _get_str(obj, "upstream", "Proxy") or ""
                enabled = _get_bool(obj, "enabled", "Proxy")
                entries.append((index, name, listen, upstream, enabled is None or enabled))
            for index, name, _, upstream, _ in entries:
                if not name:
                    raise ApiError(f"missing required field: name at proxy {index}", 400)
                if not upstream:
                    raise ApiError(f"missing required field: upstream at proxy {index}", 400)
            for _, name, listen, upstream, enabled in entries:
                existing = self.proxies.get(name)
                if existing is not None:
                    if existing.upstream == upstream and not await self._listen_differs(
                        existing, listen
                    ):
                        created.append(existing)
                        continue
                    existing.stop()
                proxy = Proxy(self.loop, name, listen, upstream, self.rng)
                if enabled:
                    await self._start(proxy)
                self.proxies[name] = proxy
                created.append(proxy)
        except ApiError as error:
            body: dict[str, object] = error.to_json()
            body["proxies"] = [proxy.to_json() for proxy in created] or None
            return _json_response(error.status, body)
        finally:
            if created:
                log.info(
                    "populated proxies: %s", ", ".join(f"{p.name}={p.listen}" for p in created)
                )
        return _json_response(201, {"proxies": [proxy.to_json() for proxy in created] or None})

    async def proxy_show(self, request: Request, name: str) -> Response:
        return _json_response(200, self._proxy(name).to_json())

    async def proxy_update(self, request: Request, name: str) -> Response:
        proxy = self._proxy(name)
        obj = _as_object(decode_json(request.body), "toxiproxy.Proxy")
        listen = _get_str(obj, "listen", "Proxy")
        upstream = _get_str(obj, "upstream", "Proxy")
        enabled = _get_bool(obj, "enabled", "Proxy")
        blackhole = _get_bool(obj, "blackhole", "Proxy")
        listen = proxy.listen if listen is None else listen
        upstream = proxy.upstream if upstream is None else upstream
        enabled = proxy.enabled if enabled is None else enabled
        try:
            if upstream != proxy.upstream or await self._listen_differs(proxy, listen):
                # As in Toxiproxy, a new address restarts the proxy and drops its connections.
                proxy.stop()
                proxy.listen, proxy.upstream = listen, upstream
            if enabled and not proxy.enabled:
                await self._start(proxy)
            elif not enabled and proxy.enabled:
                proxy.stop()
            if blackhole is not None:
                proxy.set_blackhole(blackhole)
        finally:
            log.info(
                "updated proxy %s listen=%s upstream=%s enabled=%s blackhole=%s",
                name,
                proxy.listen,
                proxy.upstream,
                _flag(proxy.enabled),
                _flag(proxy.blackhole),
            )
        return _json_response(200, proxy.to_json())

    async def proxy_delete(self, request: Request, name: str) -> Response:
        proxy = self._proxy(name)
        proxy.stop()
        del self.proxies[name]
        log.info("deleted proxy %s", name)
        return Response(204, b"", None)

    async def toxic_index(self, request: Request, name: str) -> Response:
        proxy = self._proxy(name)
        return _json_response(200, [spec.to_json() for spec in proxy.toxics_in_order()])

    async def toxic_create(self, request: Request, name: str) -> Response:
        proxy = self._proxy(name)
        obj = _as_object(decode_json(request.body), "toxics.ToxicWrapper")
        toxic_name = _get_str(obj, "name", "ToxicWrapper") or ""
        toxic_type = _get_str(obj, "type", "ToxicWrapper") or ""
        stream = _get_str(obj, "stream", "ToxicWrapper")
        stream = "downstream" if stream is None else stream
        toxicity = _get_float(obj, "toxicity", "ToxicWrapper")
        toxicity = 1.0 if toxicity is None else toxicity
        raw_attributes = _field(obj, "attributes")
        if raw_attributes is not None and not isinstance(raw_attributes, dict):
            raise _type_error(raw_attributes, "ToxicWrapper", "attributes", "toxics.NoopToxic")
        direction = Direction.parse(stream)
        if direction is None:
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        if not toxic_name:
            toxic_name = f"{toxic_type}_{stream}"
        cls = TOXIC_TYPES.get(toxic_type)
        if cls is None:
            raise ApiError("invalid toxic type", 400)
        if proxy.find_toxic(toxic_name) is not None:
            raise ApiError("toxic already exists", 409)
        attributes = _parse_attributes(toxic_type, raw_attributes)
        spec = ToxicSpec(toxic_name, toxic_type, stream, direction, toxicity, cls(attributes))
        proxy.add_toxic(spec)
        log.info(
            "added toxic %s to proxy %s: type=%s stream=%s toxicity=%s attributes=%s",
            toxic_name,
            name,
            toxic_type,
            stream,
            toxicity,
            json.dumps(attributes),
        )
        return _json_response(200, spec.to_json())

    def _toxic(self, proxy: Proxy, toxic_name: str) -> ToxicSpec:
        spec = proxy.find_toxic(toxic_name)
        if spec is None:
            raise _TOXIC_NOT_FOUND
        return spec

    async def toxic_show(self, request: Request, name: str, toxic_name: str) -> Response:
        return _json_response(200, self._toxic(self._proxy(name), toxic_name).to_json())

    async def toxic_update(self, request: Request, name: str, toxic_name: str) -> Response:
        proxy = self._proxy(name)
        spec = self._toxic(proxy, toxic_name)
        obj = _as_object(decode_json(request.body), _TOXIC_UPDATE_TYPE)
        attributes = _parse_attributes(spec.type, _field(obj, "attributes"), spec.toxic.attributes)
        toxicity = _get_float(obj, "toxicity", "")
        spec.toxic.attributes = attributes
        if toxicity is not None:
            spec.toxicity = toxicity
        proxy.update_toxic(spec)
        log.info(
            "updated toxic %s on proxy %s: toxicity=%s attributes=%s",
            toxic_name,
            name,
            spec.toxicity,
            json.dumps(attributes),
        )
        return _json_response(200, spec.to_json())

    async def toxic_delete(self, request: Request, name: str, toxic_name: str) -> Response:
        proxy = self._proxy(name)
        spec = self._toxic(proxy, toxic_name)
        proxy.remove_toxic(spec)
        log.info("removed toxic %s from proxy %s", toxic_name, name)
        return Response(204, b"", None)

    async def reset(self, request: Request) -> Response:
        try:
            for proxy in self.proxies.values():
                await self._start(proxy)
                proxy.reset_toxics()
                proxy.set_blackhole(False)
        finally:
            log.info("reset: every proxy enabled, every toxic and blackhole removed")
        return Response(204, b"", None)


def _flag(value: bool) -> str:
    return "true" if value else "false"


# -- HTTP/1.1 on asyncio streams -----------------------------------------------------------


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


_HTTP_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")


class _BadRequest(Exception):
    """The request cannot be parsed: answer and close, in Go's words (``public``)."""

    def __init__(self, public: str = "400 Bad Request") -> None:
        super().__init__(public)
        self.public = public

    def response(self) -> bytes:
        return (
            f"HTTP/1.1 {self.public}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\n\r\n{self.public}"
        ).encode("latin-1")


@dataclass
class _Parsed:
    request: Request
    keep_alive: bool
    http10: bool


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, after_post: bool
) -> _Parsed | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest() from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest("431 Request Header Fields Too Large") from None
    lines = head.decode("latin-1").split("\r\n")
    if after_post:
        while lines and not lines[0]:
            lines.pop(0)  # Go tolerates blank lines after a POST (RFC 7230 section 3)
        if not lines:
            return None
    parts = lines[0].split(" ")
    version_match = _HTTP_VERSION.fullmatch(parts[-1])
    if len(parts) != 3 or version_match is None:
        raise _BadRequest()
    if version_match.group(1) != "1":
        raise _BadRequest("505 HTTP Version Not Supported: unsupported protocol version")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest()
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 only when asked.
    http10 = version == "HTTP/1.0"
    keep_alive = "keep-alive" in connection if http10 else "close" not in connection
    if not http10 and "host" not in headers:
        raise _BadRequest("400 Bad Request: missing required Host header")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length_text = headers.get("content-length")
    has_body = chunked or (length_text is not None and length_text.strip() != "0")
    if has_body and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if chunked:
        pieces: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest() from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            total += size
            if total > _MAX_BODY:
                raise _BadRequest()
            pieces.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(pieces)
    elif length_text is not None:
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest() from None
        if length < 0 or length > _MAX_BODY:
            raise _BadRequest()
        body = await reader.readexactly(length)
    if target.startswith("/"):  # origin form; urlsplit would read "//x" as a host
        raw_path, _, query = target.partition("?")
    else:
        url = urlsplit(target)
        raw_path, query = url.path, url.query
    if _BAD_ESCAPE.search(raw_path):
        raise _BadRequest()
    path = unquote(raw_path) or "/"
    return _Parsed(Request(method, path, headers, body, query), keep_alive, http10)


def _encode_response(response: Response, keep_alive: bool, http10: bool = False) -> bytes:
    reason = http.HTTPStatus(response.status).phrase
    # Go answers HTTP/1.0 in kind: keep-alive said when kept, close implied when not.
    lines = [f"HTTP/1.{0 if http10 else 1} {response.status} {reason}"]
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    for name, value in response.headers.items():
        lines.append(f"{name}: {value}")
    lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
    if response.status != 204:
        lines.append(f"Content-Length: {len(response.body)}")
    if http10 and keep_alive:
        lines.append("Connection: keep-alive")
    elif not keep_alive and not http10:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + (response.body if response.status != 204 else b"")


class HttpServer:
    """A small HTTP/1.1 server (keep-alive, chunked bodies) in front of an ``ApiHandler``."""

    def __init__(self, handler: ApiHandler) -> None:
        self.handler = handler
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        after_post = False
        try:
            while True:
                try:
                    parsed = await _read_request(reader, writer, after_post)
                except _BadRequest as bad:
                    writer.write(bad.response())
                    break
                if parsed is None:
                    break
                request = parsed.request
                after_post = request.method == "POST"
                try:
                    if request.method == "OPTIONS" and request.path == "*":
                        response = Response(200, b"", None)  # Go's server-wide OPTIONS *
                    else:
                        response = await self.handler.dispatch(request)
                except Exception as exc:
                    log.exception("toxiproxy API: %s %s failed", request.method, request.path)
                    response = _error_response(ApiError(str(exc), 500))
                writer.write(_encode_response(response, parsed.keep_alive, parsed.http10))
                await writer.drain()
                if not parsed.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def close_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
