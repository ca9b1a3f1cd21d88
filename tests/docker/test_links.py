"""Links end to end: real containers behind the embedded (or a separately run) Toxiproxy.

Each test runs an inner pytest session (a subprocess, as a user's run), like test_fires.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.docker

ECHO = (
    "import socket, threading\n"
    "def serve(c):\n"
    "    while (d := c.recv(65536)):\n"
    "        c.sendall(d)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(64)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)

TOPOLOGY = f"""
sites: [east, west]
services:
  echo:
    site: [east, west]
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
"""

HELPERS = """
import socket, time

import pytest


def echo_once(addr, payload=b"ping", timeout=2.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(100)
"""

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


def run_inner(pytester: pytest.Pytester, tests: str, ini: str = ""):  # type: ignore[no-untyped-def]
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n" + ini
    )
    pytester.makepyfile(test_inner=HELPERS + LINK_HELPERS + textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-s", timeout=300)


def test_embedded_links_route_cut_and_brownout(pytester: pytest.Pytester) -> None:
    result = run_inner(
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


def test_url_mode_uses_a_separately_started_server(pytester: pytest.Pytester) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_dcfire.toxiproxy",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        result = run_inner(
            pytester,
            f"""
            def test_proxied_via_the_url_server(request, dcfire, dcfire_topology):
                links = links_of(request)
                assert links.server is None and links.client.url == {url!r}
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
    result = run_inner(
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
