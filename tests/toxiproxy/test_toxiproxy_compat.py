"""Differences found by running the same requests against a real toxiproxy-server 2.12.0.

Each expectation here is what the real server answered (it is the reference for the API);
these tests run against it too with ``DCFIRE_TOXIPROXY_URL``.
"""

from __future__ import annotations

import json
import socket

import pytest
from toxiproxy_helpers import Api, HttpResult, Upstream

_BODY_ERROR = "bad request body: "


def _error_text(result: HttpResult) -> str:
    return str(json.loads(result.body)["error"])


# -- routing: gorilla/mux cleans the path, then matches the decoded path ---------------------


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("//proxies", "/proxies"),
        ("/proxies//toxics", "/proxies/toxics"),
        ("/proxies/../version", "/version"),
        ("/proxies/./x?y=1", "/proxies/x?y=1"),
        ("/proxies/a%2Fb/../c", "/proxies/a/c"),
        ("/proxies/./a%20b%28", "/proxies/a%20b%28"),
    ],
)
def test_unclean_paths_redirect_permanently(api: Api, target: str, location: str) -> None:
    result = api("GET", target)
    assert (result.status, result.body) == (301, b"")
    assert result.headers["location"] == location
    assert "content-type" not in result.headers
    assert "x-toxiproxy-request-id" not in result.headers


def test_names_match_after_percent_decoding(api: Api) -> None:
    api.create("a", "127.0.0.1:9")
    api.create("a%b", "127.0.0.1:9")
    assert api("GET", "/proxies/%61").json()["name"] == "a"
    assert api("GET", "/proxies/a%25b").json()["name"] == "a%b"
    # "/proxies/x%2Fy" is "/proxies/x/y" once decoded, which no route matches (so a proxy
    # named with a "/" cannot be reached; Toxiproxy's own behaviour).
    for target in ("/proxies/x%2Fy", "/proxies/x/y"):
        result = api("GET", target)
        assert (result.status, result.body) == (404, b"404 page not found\n")
        assert result.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("target", ["/proxies/%zz", "/proxies/a%2"])
def test_a_bad_percent_escape_is_a_bad_request(api: Api, target: str) -> None:
    result = api("GET", target)
    assert result.status == 400
    assert result.body.startswith(b"400 Bad Request")


def test_request_id_header_only_on_routed_answers(api: Api) -> None:
    ids = {api("GET", "/version").headers["x-toxiproxy-request-id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(i) == 20 and i.isalnum() for i in ids)
    assert "x-toxiproxy-request-id" in api("GET", "/proxies/nope").headers
    browser = api("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert browser.status == 403 and "x-toxiproxy-request-id" in browser.headers
    assert browser.headers["x-content-type-options"] == "nosniff"
    assert "x-toxiproxy-request-id" not in api("GET", "/nope").headers  # no route
    assert "x-toxiproxy-request-id" not in api("PUT", "/proxies").headers  # no method


# -- request bodies: Go's decoder and its words -------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "unexpected EOF"),
        (b"nul", "unexpected EOF"),
        (b'"str', "unexpected EOF"),
        (b'{"a":1', "unexpected EOF"),
        (b'{"a":1.', "unexpected EOF"),
        (b'{"name": "bad\\u00zz"}', "invalid character 'z' in \\u hexadecimal character escape"),
        (b'{"name": tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a": nulL}', "invalid character 'L' in literal null (expecting 'l')"),
        (b'{"name" 1}', "invalid character '1' after object key"),
        (b'{"name": 1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b'{"a":"x\\qy"}', "invalid character 'q' in string escape code"),
        (b'{"a":01}', "invalid character '1' after object key:value pair"),
        (b'{"a":-}', "invalid character '}' in numeric literal"),
        (b'{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a":1e}', "invalid character '}' in exponent of numeric literal"),
        (b'{"a":"\x01"}', "invalid character '\\x01' in string literal"),
        (b'{"a":"a\nb"}', "invalid character '\\n' in string literal"),
        (b"{a:1}", "invalid character 'a' looking for beginning of object key string"),
        (b"  x", "invalid character 'x' looking for beginning of value"),
        (b'{"a":[1,]}', "invalid character ']' looking for beginning of value"),
        (b'{"a":NaN}', "invalid character 'N' looking for beginning of value"),
        (b'{"a":-Infinity}', "invalid character 'I' in numeric literal"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
    ],
)
def test_json_syntax_errors_read_like_go(api: Api, payload: bytes, message: str) -> None:
    result = api("POST", "/proxies", raw=payload)
    assert result.status == 400
    assert _error_text(result) == _BODY_ERROR + message


def test_invalid_utf8_in_a_string_is_replaced_not_refused(api: Api) -> None:
    body = b'{"name": "caf\xe9", "upstream": "x:1", "listen": "127.0.0.1:0"}'
    result = api("POST", "/proxies", raw=body)
    assert result.status == 201
    assert result.json()["name"] == "caf\ufffd"


def test_a_lone_surrogate_escape_becomes_a_replacement_character(api: Api) -> None:
    body = b'{"name": "s\\ud800x", "upstream": "x:1", "listen": "127.0.0.1:0"}'
    result = api("POST", "/proxies", raw=body)
    assert result.status == 201, result.body
    assert result.json()["name"] == "s\ufffdx"
    assert list(api("GET", "/proxies").json()) == ["s\ufffdx"]  # and the list still encodes
    paired = b'{"name": "\\ud83d\\ude00", "upstream": "x:1", "listen": "127.0.0.1:0"}'
    assert api("POST", "/proxies", raw=paired).json()["name"] == "\U0001f600"


@pytest.mark.parametrize(
    ("toxic", "message"),
    [
        (
            b'{"type":"latency","attributes":{"latency":9223372036854775808}}',
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "LatencyToxic.attributes.latency of type int64",
        ),
        (
            b'{"type":"latency","attributes":{"latency":1e3}}',
            "json: cannot unmarshal number 1e3 into Go struct field "
            "LatencyToxic.attributes.latency of type int64",
        ),
        (
            b'{"type":"latency","toxicity":1e40}',
            "json: cannot unmarshal number 1e40 into Go struct field "
            "ToxicWrapper.toxicity of type float32",
        ),
    ],
)
def test_numbers_beyond_go_types_are_refused(api: Api, toxic: bytes, message: str) -> None:
    api.create("p", "127.0.0.1:9")
    result = api("POST", "/proxies/p/toxics", raw=toxic)
    assert result.status == 400
    assert _error_text(result) == _BODY_ERROR + message
    assert api("GET", "/proxies/p/toxics").json() == []


def test_int64_bounds_are_accepted(api: Api) -> None:
    api.create("p", "127.0.0.1:9")
    toxic = api.toxic("p", type="timeout", attributes={"timeout": -(1 << 63)})
    assert toxic["attributes"]["timeout"] == -(1 << 63)


def test_toxicity_is_a_float32(api: Api) -> None:
    api.create("p", "127.0.0.1:9")
    toxic = api.toxic("p", type="latency", toxicity=0.3333333333)
    assert toxic["toxicity"] == 0.33333334
    assert b'"toxicity":0.33333334' in api("GET", "/proxies/p/toxics/latency_downstream").body
    updated = api.patch("/proxies/p/toxics/latency_downstream", {"toxicity": 0.1})
    assert updated["toxicity"] == 0.1


def test_toxic_update_of_the_wrong_shape_names_go_type(api: Api) -> None:
    api.create("p", "127.0.0.1:9")
    api.toxic("p", type="latency")
    result = api("PATCH", "/proxies/p/toxics/latency_downstream", raw=b"[]")
    assert result.status == 400
    assert _error_text(result) == (
        "bad request body: json: cannot unmarshal array into Go value of type struct { "
        'Attributes interface {} "json:\\"attributes\\""; Toxicity float32 "json:\\"toxicity\\"" }'
    )


# -- listen addresses: Go's net.Listen errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "listen tcp: address 99999: invalid port"),
        ("127.0.0.1:-1", "listen tcp: address -1: invalid port"),
        ("127.0.0.1:nosuchservice", "listen tcp: address tcp/nosuchservice: unknown port"),
    ],
)
def test_bad_listen_ports(api: Api, listen: str, message: str) -> None:
    result = api("POST", "/proxies", {"name": "p", "upstream": "x:1", "listen": listen})
    assert result.status == 500
    assert _error_text(result) == message


def test_a_service_name_is_a_port(api: Api, echo: Upstream) -> None:
    # Go resolves service names from /etc/services; pick one whose port is free here.
    for service in ("x11-7", "x11-6", "gds-db", "x11", "postgresql", "gopher"):
        try:
            port = socket.getservbyname(service, "tcp")
        except OSError:
            continue
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                continue
        break
    else:
        pytest.skip("no service name with a free port in /etc/services")
    result = api(
        "POST",
        "/proxies",
        {"name": "p", "upstream": f"127.0.0.1:{echo.port}", "listen": f"127.0.0.1:{service}"},
    )
    assert result.status == 201, result.body
    assert result.json()["listen"] == f"127.0.0.1:{port}"


def test_unknown_listen_host(api: Api) -> None:
    result = api("POST", "/proxies", {"name": "p", "upstream": "x:1", "listen": "nohost.invalid:0"})
    assert result.status == 500
    # Go's pure resolver adds " on <nameserver>" after the name; the rest is the same.
    message = _error_text(result)
    assert message.startswith("listen tcp: lookup nohost.invalid")
    assert message.endswith(": no such host")


def test_the_ipv4_wildcard_listens_on_both_families(api: Api, echo: Upstream) -> None:
    body = api.create("p", echo.port, listen="0.0.0.0:0")
    host, port = body["listen"].rsplit(":", 1)
    assert host == "[::]"
    for family, loopback in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as sock:
            sock.settimeout(5)
            sock.connect((loopback, int(port)))


@pytest.mark.parametrize("host", ["127.1", "0x7f.0.0.1", "127.0.0.01"])
def test_ipv4_shorthands_are_names_to_go(api: Api, host: str) -> None:
    result = api("POST", "/proxies", {"name": "p", "upstream": "x:1", "listen": f"{host}:0"})
    assert result.status == 500
    # Go's pure resolver may add " on <nameserver>" after the name, as for any unknown host.
    message = _error_text(result)
    assert message.startswith(f"listen tcp: lookup {host}") and message.endswith("no such host")


def test_an_empty_listen_is_always_a_new_address(api: Api, echo: Upstream) -> None:
    upstream = f"127.0.0.1:{echo.port}"
    populated = api(
        "POST", "/populate", raw=json.dumps([{"name": "a", "upstream": upstream}]).encode()
    )
    assert populated.status == 201
    first = populated.json()["proxies"][0]["listen"]
    # Populating it again without a listen address (disabled) replaces it, unstarted.
    again = api(
        "POST",
        "/populate",
        raw=json.dumps([{"name": "a", "upstream": upstream, "enabled": False}]).encode(),
    )
    assert again.status == 201, again.body
    proxy = api("GET", "/proxies/a").json()
    assert (proxy["listen"], proxy["enabled"]) == ("", False)
    # An explicit empty listen on update restarts it on a new port of every address.
    api.patch("/proxies/a", {"enabled": True})
    moved = api.patch("/proxies/a", {"listen": ""})
    assert moved["enabled"] is True and moved["listen"].startswith("[::]:")
    assert moved["listen"] != first


# -- HTTP: what Go's net/http server does before the API sees a request ----------------------


def _exchange(api: Api, request: bytes) -> tuple[bytes, bool]:
    """The server's bytes for ``request``, and whether it then closed the connection."""
    with socket.create_connection((api.host, api.port), timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(0.5)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        return data, True


def test_http_1_0_is_answered_in_kind(api: Api) -> None:
    data, closed = _exchange(api, b"GET /version HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and closed
    assert b"\r\nConnection:" not in data.split(b"\r\n\r\n")[0]
    data, closed = _exchange(api, b"GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and not closed
    assert b"\r\nConnection: keep-alive\r\n" in data


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /version HTTP/1.1\r\n\r\n", "400 Bad Request: missing required Host header"),
        (
            b"GET /version HTTP/2.0\r\nHost: x\r\n\r\n",
            "505 HTTP Version Not Supported: unsupported protocol version",
        ),
        (b"\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request"),
    ],
)
def test_requests_go_refuses(api: Api, request_bytes: bytes, status_line: str) -> None:
    data, closed = _exchange(api, request_bytes)
    assert closed
    assert (
        data
        == (
            f"HTTP/1.1 {status_line}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\n\r\n{status_line}"
        ).encode()
    )


def test_blank_lines_after_a_post_are_tolerated(api: Api) -> None:
    data, _ = _exchange(
        api,
        b"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"HTTP/1.1 200 OK\r\n" in data


def test_options_star_is_answered_by_the_server(api: Api) -> None:
    data, closed = _exchange(api, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and not closed
    assert b"\r\nContent-Length: 0\r\n" in data and b"Location" not in data
