"""Links end to end: real containers behind the embedded (or a separately run) Toxiproxy.

Each test runs an inner pytest session (a subprocess, as a user's run), like test_fires.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from inner_session import ECHO_HELPERS, echo_topology, run_inner

pytestmark = pytest.mark.docker


TOPOLOGY = echo_topology(volumes=False)

HELPERS = ECHO_HELPERS + "import time\n"

LINK_HELPERS = """
from pytest_dcfire.plugin import SESSION_KEY


def links_of(request):
    return request.config.stash[SESSION_KEY].links


def rtt(addr, payload=b"ping"):
    with socket.create_connection(addr, timeout=5) as s:
        started = time.monotonic()
        s.sendall(payload)
        assert s.recv(100) == payload
        return time.monotonic() - started
"""


def run_links(pytester: pytest.Pytester, tests: str, ini: str = "") -> pytest.RunResult:
    result: pytest.RunResult = run_inner(
        pytester, TOPOLOGY, HELPERS + LINK_HELPERS + textwrap.dedent(tests), ini=ini
    )
    return result


def test_embedded_links_route_cut_and_brownout(pytester: pytest.Pytester) -> None:
    result = run_links(
        pytester,
        """
        def test_address_goes_through_a_proxy(request, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            links = links_of(request)
            proxies = links.client.proxies()
            name = links.proxies[("echo@east", 7000)][0]
            assert name in proxies and name.endswith("-echo_east-7000")
            host, port = east.direct_address(7000)
            assert proxies[name]["upstream"] == f"{host}:{port}"
            assert east.address(7000)[1] == int(proxies[name]["listen"].rsplit(":", 1)[1])
            assert echo_once(east.address(7000)) == b"ping"

        def test_fire_hangs_the_proxy_and_restore_lifts_it(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            west = dcfire_topology.service("echo@west")
            with dcfire.fire("east") as fire:
                with socket.create_connection(east.address(7000), timeout=1.0) as s:
                    s.sendall(b"x")
                    with pytest.raises(TimeoutError):  # a hang, not a reset
                        s.recv(10)
                assert echo_once(west.address(7000)) == b"ping"
                links = [t for t in fire.record.steps if t.effect == "links"]
                assert links and links[0].method == "blackhole"
                print(f"LINKS-TIMING cut_ms={fire.record.cut_ms:.1f} " + " ".join(
                    f"{t.effect}={t.latency_ms:.1f}" for t in fire.record.steps))
            assert echo_once(east.address(7000)) == b"ping"

        def test_brownout_adds_latency(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            base = rtt(east.address(7000))
            record = dcfire.brownout("east", latency=100)
            slow = rtt(east.address(7000))
            assert slow >= 0.18, (base, slow)  # 100 ms each way
            assert dcfire.brownouts == [record]
            assert rtt(dcfire_topology.service("echo@west").address(7000)) < 0.15

        def test_brownout_was_undone(dcfire_topology, request):
            assert rtt(dcfire_topology.service("echo@east").address(7000)) < 0.15
            assert all(p["toxics"] == [] for p in links_of(request).client.proxies().values())

        def test_brownout_names_what_is_valid(dcfire):
            with pytest.raises(Exception, match="unknown site or service 'eats'.*east"):
                dcfire.brownout("eats", latency=10)
        """,
    )
    result.assert_outcomes(passed=5)
    for line in result.outlines:
        if "LINKS-TIMING" in line:
            print(line)


#: A real toxiproxy-server binary: url mode is then also run against it (cut = timeout-0 toxics).
REAL_TOXIPROXY = os.environ.get("DCFIRE_REAL_TOXIPROXY", "")


@pytest.mark.parametrize(
    "server_kind",
    [
        "embedded",
        pytest.param(
            "real",
            marks=pytest.mark.skipif(
                not REAL_TOXIPROXY, reason="DCFIRE_REAL_TOXIPROXY (a toxiproxy-server path) unset"
            ),
        ),
    ],
)
def test_url_mode_uses_a_separately_started_server(
    pytester: pytest.Pytester, server_kind: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if server_kind == "real":
        command = [REAL_TOXIPROXY, "-host", "127.0.0.1", "-port", str(port)]
    else:
        command = [sys.executable, "-m", "pytest_dcfire.toxiproxy", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
    server = subprocess.Popen(command)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        result = run_links(
            pytester,
            f"""
            def test_proxied_via_the_url_server(request, dcfire, dcfire_topology):
                links = links_of(request)
                assert links.server is None and links.client.url == {url!r}
                assert links.client.embedded is {server_kind == "embedded"}
                east = dcfire_topology.service("echo@east")
                assert east.address(7000) != east.direct_address(7000)
                assert echo_once(east.address(7000)) == b"ping"
                with dcfire.fire("east", storage=False):
                    with socket.create_connection(east.address(7000), timeout=1.0) as s:
                        s.sendall(b"x")
                        with pytest.raises(TimeoutError):
                            s.recv(10)
                assert echo_once(east.address(7000)) == b"ping"
            """,
            ini=f"dcfire_toxiproxy = url:{url}\n",
        )
        result.assert_outcomes(passed=1)
        from pytest_dcfire.links import LinkClient

        assert LinkClient(url).proxies() == {}  # ours were removed at session end
    finally:
        server.terminate()
        server.wait(10)


def test_unreachable_url_fails_naming_the_ini_key(pytester: pytest.Pytester) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_links(
        pytester,
        """
        def test_needs_system(dcfire_topology):
            pass
        """,
        ini=f"dcfire_toxiproxy = url:http://127.0.0.1:{port}\n",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*dcfire_toxiproxy = 'url:http://127.0.0.1:*no Toxiproxy answers*"]
    )
