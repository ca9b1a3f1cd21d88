"""The HTTP API, through toxiproxy-python and raw HTTP: endpoints, shapes, defaults and codes.

Expected bodies and codes were checked against real toxiproxy-servers 2.8.0 and 2.12.0: set
``DCFIRE_TOXIPROXY_URL`` to run these tests against one.
"""

from __future__ import annotations

import http.client
import json
import socket

import pytest
import toxiproxy.exceptions as txe
from toxiproxy import Toxiproxy
from toxiproxy_helpers import Api, ServerUnderTest, Upstream, address, connect, round_trip

from pytest_dcfire.toxiproxy import TOXIPROXY_API_VERSION


def _refused(proxy: dict[str, object]) -> bool:
    try:
        socket.create_connection(address(proxy), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _error(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}, separators=(",", ":")).encode() + b"\n"


# -- toxiproxy-python ------------------------------------------------------------------------


def test_client_version_and_running(client: Toxiproxy) -> None:
    assert client.running()
    assert json.loads(client.version())["version"] == TOXIPROXY_API_VERSION


def test_client_create_list_get_destroy(client: Toxiproxy, echo: Upstream) -> None:
    proxy = client.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    assert proxy.enabled is True
    assert proxy.upstream == f"127.0.0.1:{echo.port}"
    host, port = proxy.listen.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # port 0 reports the bound port
    assert set(client.proxies()) == {"echo"}
    assert client.get_proxy("echo").listen == proxy.listen
    assert client.get_proxy("missing") is None
    with pytest.raises(txe.ProxyExists):
        client.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as sock:
        assert round_trip(sock) < 1
    assert client.destroy(proxy)
    assert client.proxies() == {}
    with pytest.raises(txe.NotFound):
        proxy.destroy()


def test_client_disable_enable_and_down(client: Toxiproxy, echo: Upstream) -> None:
    proxy = client.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    listen = {"listen": proxy.listen}
    proxy.disable()
    assert client.get_proxy("echo").enabled is False
    assert _refused(listen)
    proxy.enable()
    assert client.get_proxy("echo").enabled is True
    assert client.get_proxy("echo").listen == proxy.listen  # the same port again
    with connect(listen) as sock:
        round_trip(sock)
    with proxy.down():
        assert _refused(listen)
    with connect(listen) as sock:
        round_trip(sock)


def test_client_toxics(client: Toxiproxy, echo: Upstream) -> None:
    proxy = client.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 10, "jitter": 2})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="slow", toxicity=0.5)
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "slow"}
    latency = proxy.get_toxic("latency_downstream")
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1)
    assert latency.attributes == {"latency": 10, "jitter": 2}
    assert proxy.get_toxic("slow").attributes == {"rate": 0}
    assert proxy.get_toxic("missing") is None
    with pytest.raises(txe.ProxyExists):
        proxy.add_toxic(type="latency")
    with pytest.raises(txe.InvalidToxic):
        proxy.add_toxic(type="no_such_toxic")
    with pytest.raises(txe.InvalidToxic):
        proxy.add_toxic(type="latency", stream="sideways", name="x")
    assert proxy.destroy_toxic("slow")
    assert set(proxy.toxics()) == {"latency_downstream"}
    with pytest.raises(txe.NotFound):
        proxy.destroy_toxic("slow")


def test_client_reset_and_destroy_all(client: Toxiproxy, echo: Upstream) -> None:
    first = client.create(upstream=f"127.0.0.1:{echo.port}", name="a")
    second = client.create(upstream=f"127.0.0.1:{echo.port}", name="b", enabled=False)
    first.add_toxic(type="timeout", attributes={"timeout": 0})
    first.disable()
    assert client.reset()
    proxies = client.proxies()
    assert proxies["a"].enabled and proxies["b"].enabled
    assert first.toxics() == {}
    with connect({"listen": proxies["b"].listen}) as sock:
        round_trip(sock)
    assert second.name == "b"
    client.destroy_all()
    assert client.proxies() == {}


def test_client_populate(client: Toxiproxy, echo: Upstream) -> None:
    upstream = f"127.0.0.1:{echo.port}"
    made = client.populate([{"name": "a", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in made] == ["a"]
    listen = client.get_proxy("a").listen
    # Same upstream and the bound address: left alone.
    assert client.populate([{"name": "a", "upstream": upstream, "listen": listen}]) == []
    assert client.get_proxy("a").listen == listen


# -- raw HTTP: shapes -------------------------------------------------------------------------


def test_version_shape(api: Api) -> None:
    result = api("GET", "/version")
    assert result.status == 200
    assert result.headers["content-type"] == "application/json;charset=utf-8"
    assert result.body.endswith(b"\n")
    assert result.json()["version"] == TOXIPROXY_API_VERSION


#: A proxy's fields in Toxiproxy's README, in the order its JSON has them.
DOCUMENTED_PROXY_FIELDS = ["name", "listen", "upstream", "enabled", "toxics"]


def test_proxy_shape_and_codes(
    api: Api, echo: Upstream, server_under_test: ServerUnderTest
) -> None:
    assert api("GET", "/proxies").json() == {}
    created = api(
        "POST",
        "/proxies",
        {"name": "p", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"},
    )
    assert created.status == 201
    assert created.headers["content-type"] == "application/json"
    body = created.json()
    assert [key for key in body if key in DOCUMENTED_PROXY_FIELDS] == DOCUMENTED_PROXY_FIELDS
    if server_under_test.ours:
        assert list(body) == [*DOCUMENTED_PROXY_FIELDS, "blackhole"]
        assert body["blackhole"] is False
    else:
        # Toxiproxy (2.5+) also leaks its Go struct's untagged Logger field as "Logger": {}.
        assert set(body) - set(DOCUMENTED_PROXY_FIELDS) <= {"Logger"}
    assert body["enabled"] is True and body["toxics"] == []
    assert not body["listen"].endswith(":0")
    assert api("GET", "/proxies/p").json() == body
    assert api("GET", "/proxies").json() == {"p": body}
    duplicate = api("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": "x:1"})
    assert duplicate.status == 409
    assert duplicate.body == _error(409, "proxy already exists")
    assert duplicate.headers["content-type"] == "text/plain; charset=utf-8"
    missing = api("GET", "/proxies/nope")
    assert (missing.status, missing.body) == (404, _error(404, "proxy not found"))
    deleted = api("DELETE", "/proxies/p")
    assert (deleted.status, deleted.body) == (204, b"")
    assert api("DELETE", "/proxies/p").status == 404
    assert _refused(body)


def test_create_disabled_does_not_listen(api: Api) -> None:
    body = api.create("off", "127.0.0.1:9", enabled=False)
    assert body["enabled"] is False
    assert body["listen"] == "127.0.0.1:0"  # as given: nothing was bound


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "bad request body: EOF"),
        (b"null", "missing required field: name"),
        (b'{"upstream": "x:1"}', "missing required field: name"),
        (b'{"name": "a"}', "missing required field: upstream"),
        (
            b'{"name": 1, "upstream": "x:1"}',
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.name of type string",
        ),
        (
            b'{"name": "a", "upstream": "x:1", "enabled": "yes"}',
            "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool",
        ),
        (
            b"[1]",
            "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy",
        ),
    ],
)
def test_create_proxy_bad_requests(api: Api, payload: bytes, message: str) -> None:
    result = api("POST", "/proxies", raw=payload)
    assert (result.status, result.body) == (400, _error(400, message))


def test_create_proxy_invalid_json_and_bad_listen(api: Api) -> None:
    result = api("POST", "/proxies", raw=b"{bad")
    assert result.status == 400
    assert result.json()["error"].startswith("bad request body: ")
    bad_listen = api("POST", "/proxies", {"name": "a", "upstream": "x:1", "listen": "nope"})
    assert bad_listen.status == 500
    assert bad_listen.json()["error"] == "listen tcp: address nope: missing port in address"
    assert api("GET", "/proxies").json() == {}


def test_create_proxy_on_a_busy_port_is_500(api: Api) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = api(
            "POST", "/proxies", {"name": "a", "upstream": "x:1", "listen": f"127.0.0.1:{port}"}
        )
    assert result.status == 500
    assert result.json()["error"] == f"listen tcp 127.0.0.1:{port}: bind: address already in use"


def test_keys_are_case_insensitive_and_trailing_data_ignored(api: Api) -> None:
    result = api(
        "POST",
        "/proxies",
        raw=b'{"Name": "c", "UPSTREAM": "x:1", "listen": "127.0.0.1:0"} trailing',
    )
    assert result.status == 201
    assert result.json()["name"] == "c" and result.json()["upstream"] == "x:1"


def test_update_proxy(api: Api, echo: Upstream, upstream_factory: object) -> None:
    body = api.create("p", echo.port)
    for method in ("POST", "PATCH"):  # POST on a proxy updates it, as in Toxiproxy
        result = api(method, "/proxies/p", {"enabled": False, "name": "ignored"})
        assert result.status == 200
        assert result.json() == {**body, "enabled": False}
        assert _refused(body)
        assert api(method, "/proxies/p", {"enabled": True}).json() == body
    # A new upstream drops live connections and restarts on the same address.
    sock = connect(body)
    round_trip(sock)
    moved = api.patch("/proxies/p", {"upstream": "127.0.0.1:9"})
    assert moved["upstream"] == "127.0.0.1:9" and moved["listen"] == body["listen"]
    sock.settimeout(2)
    assert sock.recv(1) == b""
    sock.close()
    # A new listen address moves the listener.
    relisten = api.patch("/proxies/p", {"listen": "127.0.0.1:0"})
    assert relisten["listen"] != body["listen"] and relisten["enabled"] is True
    assert _refused(body)
    assert api("PATCH", "/proxies/nope", {"enabled": False}).status == 404
    bad = api("PATCH", "/proxies/p", raw=b"")
    assert (bad.status, bad.body) == (400, _error(400, "bad request body: EOF"))


TOXIC_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}


@pytest.mark.parametrize("toxic_type", sorted(TOXIC_ATTRIBUTES))
def test_every_toxic_type_with_defaults(api: Api, toxic_type: str) -> None:
    api.create("p", "127.0.0.1:9")
    result = api("POST", "/proxies/p/toxics", {"type": toxic_type})
    assert result.status == 200  # Toxiproxy answers 200, not 201, for a new toxic
    assert result.headers["content-type"] == "application/json"
    expected = {
        "attributes": TOXIC_ATTRIBUTES[toxic_type],
        "name": f"{toxic_type}_downstream",
        "type": toxic_type,
        "stream": "downstream",
        "toxicity": 1,
    }
    assert result.json() == expected
    assert list(result.json()) == list(expected)
    # Every attribute can be set.
    attributes = {name: 7 for name in TOXIC_ATTRIBUTES[toxic_type]}
    named = api.toxic(
        "p", type=toxic_type, name="set", stream="upstream", toxicity=0.25, attributes=attributes
    )
    assert named["attributes"] == attributes and named["toxicity"] == 0.25


def test_toxic_endpoints(api: Api) -> None:
    api.create("p", "127.0.0.1:9")
    down = api.toxic("p", type="latency", attributes={"latency": 5})
    up = api.toxic("p", type="latency", stream="UPSTREAM", toxicity=0.1)
    assert up["name"] == "latency_UPSTREAM" and up["stream"] == "UPSTREAM"
    # Upstream toxics are listed first.
    assert api("GET", "/proxies/p/toxics").json() == [up, down]
    assert api("GET", "/proxies/p").json()["toxics"] == [up, down]
    assert api("GET", "/proxies/p/toxics/latency_downstream").json() == down
    # Updates change only what they name; name, type and stream stay.
    updated = api.patch("/proxies/p/toxics/latency_downstream", {"attributes": {"jitter": 3}})
    assert updated["attributes"] == {"latency": 5, "jitter": 3}
    posted = api(
        "POST",
        "/proxies/p/toxics/latency_downstream",
        {"toxicity": 0.5, "type": "bandwidth", "name": "zz"},
    )
    assert posted.status == 200
    assert posted.json() == {**updated, "toxicity": 0.5}
    api.delete("/proxies/p/toxics/latency_downstream")
    assert api("GET", "/proxies/p/toxics").json() == [up]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "name": "dup"},
            409,
            "toxic already exists",
        ),
        ("POST", "/proxies/p/toxics", {"type": "nope"}, 400, "invalid toxic type"),
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "stream": "sideways"},
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "attributes": {"latency": "5"}},
            400,
            "bad request body: json: cannot unmarshal string into Go struct field LatencyToxic.attributes.latency of type int64",
        ),
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "attributes": {"latency": 5.5}},
            400,
            "bad request body: json: cannot unmarshal number 5.5 into Go struct field LatencyToxic.attributes.latency of type int64",
        ),
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "attributes": "x"},
            400,
            "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic",
        ),
        (
            "POST",
            "/proxies/p/toxics",
            {"type": "latency", "toxicity": "high"},
            400,
            "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32",
        ),
        ("POST", "/proxies/nope/toxics", {"type": "latency"}, 404, "proxy not found"),
        ("GET", "/proxies/nope/toxics", None, 404, "proxy not found"),
        ("GET", "/proxies/p/toxics/nope", None, 404, "toxic not found"),
        ("PATCH", "/proxies/p/toxics/nope", {"toxicity": 1}, 404, "toxic not found"),
        (
            "PATCH",
            "/proxies/p/toxics/dup",
            {"attributes": {"latency": "x"}},
            400,
            "bad request body: json: cannot unmarshal string into Go struct field LatencyToxic.attributes.latency of type int64",
        ),
        ("DELETE", "/proxies/p/toxics/nope", None, 404, "toxic not found"),
        ("DELETE", "/proxies/nope/toxics/dup", None, 404, "proxy not found"),
    ],
)
def test_toxic_errors(
    api: Api, method: str, path: str, payload: object, status: int, message: str
) -> None:
    api.create("p", "127.0.0.1:9")
    api.toxic("p", type="latency", name="dup")
    result = api(method, path, payload)
    assert (result.status, result.body) == (status, _error(status, message))


def test_reset(api: Api, echo: Upstream) -> None:
    body = api.create("p", echo.port)
    api.toxic("p", type="latency")
    api.patch("/proxies/p", {"enabled": False, "blackhole": True})
    result = api("POST", "/reset")
    assert (result.status, result.body) == (204, b"")
    assert api("GET", "/proxies/p").json() == body


def test_populate(api: Api, echo: Upstream) -> None:
    upstream = f"127.0.0.1:{echo.port}"
    empty = api("POST", "/populate", [])
    assert (empty.status, empty.json()) == (201, {"proxies": None})
    created = api(
        "POST",
        "/populate",
        [
            {"name": "a", "upstream": upstream, "listen": "127.0.0.1:0"},
            {"name": "b", "upstream": upstream, "listen": "127.0.0.1:0", "enabled": False},
        ],
    )
    assert created.status == 201
    a, b = created.json()["proxies"]
    assert (a["name"], a["enabled"], b["name"], b["enabled"]) == ("a", True, "b", False)
    # Same fields: untouched. A new upstream: replaced (toxics go with the old proxy).
    api.toxic("a", type="latency")
    same = api("POST", "/populate", [{"name": "a", "upstream": upstream, "listen": a["listen"]}])
    assert same.json()["proxies"][0]["toxics"] != []
    replaced = api(
        "POST", "/populate", [{"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"}]
    )
    assert replaced.json()["proxies"][0]["toxics"] == []
    assert replaced.json()["proxies"][0]["upstream"] == "127.0.0.1:9"


def test_populate_errors(api: Api) -> None:
    missing = api(
        "POST",
        "/populate",
        [{"name": "x", "upstream": "x:1", "listen": "127.0.0.1:0"}, {"upstream": "x:2"}],
    )
    assert missing.status == 400
    assert missing.headers["content-type"] == "application/json"
    assert missing.json() == {
        "error": "missing required field: name at proxy 2",
        "status": 400,
        "proxies": None,
    }
    assert api("GET", "/proxies").json() == {}  # nothing is created when one entry is bad
    no_upstream = api("POST", "/populate", [{"name": "x"}])
    assert no_upstream.json()["error"] == "missing required field: upstream at proxy 1"
    not_a_list = api("POST", "/populate", {"name": "x"})
    assert not_a_list.status == 400
    assert not_a_list.json()["error"].startswith("bad request body: json: cannot unmarshal object")


def test_routing_errors(api: Api) -> None:
    assert api("GET", "/nope").status == 404
    assert api("GET", "/proxies/").body == b"404 page not found\n"
    not_allowed = api("PUT", "/proxies", {})
    assert (not_allowed.status, not_allowed.body) == (405, b"")
    assert api("POST", "/version").status == 405
    assert api("GET", "/reset").status == 405
    browser = api("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert (browser.status, browser.body) == (403, b"User agent not allowed\n")


def test_names_are_url_decoded(api: Api) -> None:
    api.create("a b", "127.0.0.1:9")
    assert api("GET", "/proxies/a%20b").json()["name"] == "a b"


def test_keep_alive_and_chunked_bodies(api: Api) -> None:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/version")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        body = json.dumps({"name": "chunky", "listen": "127.0.0.1:0", "upstream": "x:1"}).encode()
        conn.request("POST", "/proxies", body=iter([body[:10], body[10:]]), encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 201
        assert json.loads(response.read())["name"] == "chunky"
        conn.request("DELETE", "/proxies/chunky")
        assert conn.getresponse().status == 204
    finally:
        conn.close()


@pytest.mark.embedded_only("the blackhole field is our extension")
def test_blackhole_field(api: Api, echo: Upstream) -> None:
    body = api.create("p", echo.port, blackhole=True)
    assert body["blackhole"] is True
    assert api.patch("/proxies/p", {"blackhole": False})["blackhole"] is False
    assert api("POST", "/proxies/p", {"blackhole": True}).json()["blackhole"] is True
    bad = api("PATCH", "/proxies/p", {"blackhole": "yes"})
    assert bad.status == 400


@pytest.mark.parametrize(
    ("listen", "reported_host", "connect_host"),
    [
        ("localhost:0", "127.0.0.1", "127.0.0.1"),  # a name binds its first IPv4 address, as in Go
        (":0", "[::]", "127.0.0.1"),  # every interface, both families
        ("", "[::]", "127.0.0.1"),
    ],
)
def test_listen_forms(
    api: Api, echo: Upstream, listen: str, reported_host: str, connect_host: str
) -> None:
    result = api(
        "POST", "/proxies", {"name": "p", "listen": listen, "upstream": f"localhost:{echo.port}"}
    )
    assert result.status == 201
    host, port = result.json()["listen"].rsplit(":", 1)
    assert host == reported_host and int(port) > 0
    with socket.create_connection((connect_host, int(port)), timeout=5) as sock:
        round_trip(sock)
    # The same address spelled with the name is not a change (no restart, same port).
    same = api.patch("/proxies/p", {"listen": f"{listen.rsplit(':', 1)[0]}:{port}"})
    assert same["listen"] == result.json()["listen"]
