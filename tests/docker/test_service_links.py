"""Service-to-service links end to end: placeholders, WAN latency, partitions, brownouts.

Three sites, an echo server in each, and a client container in two of them whose
environment names the echo servers through `${link:...}` placeholders. The client measures
from inside its container, so every path tested is a real container-to-proxy-to-container
path. Runs as an inner pytest session, like test_links.py.
"""

from __future__ import annotations

import textwrap

import pytest
from inner_session import ECHO, run_inner

pytestmark = pytest.mark.docker


TOPOLOGY = f"""
sites: [pangyo, ansan, incheon]
wan:
  latency: 0
  pairs: [{{sites: [pangyo, incheon], latency: 60}}]
services:
  echo:
    site: [pangyo, ansan, incheon]
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
  client:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
    command: ["sleep", "infinity"]
    environment:
      TO_PANGYO: "${{link:echo@pangyo:7000}}"
      TO_ANSAN: "${{link:echo@ansan:7000}}"
      TO_INCHEON: "${{link:echo@incheon:7000}}"
      ANSAN_PORT: "${{link.port:echo@ansan:7000}}"
"""

#: Run inside a client container: "ok <rtt ms>", or the error's class when the link hangs.
PROBE = """
import os, socket, sys, time
host, port = os.environ[sys.argv[1]].rsplit(":", 1)
try:
    with socket.create_connection((host, int(port)), timeout=1.5) as s:
        started = time.monotonic()
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        print(f"ok {(time.monotonic() - started) * 1000:.0f}")
except OSError as e:
    print(type(e).__name__)
"""

HELPERS = f"""
import socket

import pytest

from pytest_dcfire import brownout, dc_fire, partition
from pytest_dcfire.plugin import SESSION_KEY

PROBE = {PROBE!r}


def probe(dcfire_topology, client, target):
    code, out = dcfire_topology.service(client).exec(["python3", "-c", PROBE, target])
    assert code == 0, out
    return out.strip()


def reaches(dcfire_topology, client, target):
    return probe(dcfire_topology, client, target).startswith("ok")


def rtt_ms(dcfire_topology, client, target):
    out = probe(dcfire_topology, client, target)
    assert out.startswith("ok"), out
    return float(out.split()[1])
"""

TESTS = """
def test_placeholders_become_proxy_addresses(request, dcfire_topology):
    links = request.config.stash[SESSION_KEY].links
    client = dcfire_topology.service("client@pangyo")
    env = dict(e.split("=", 1) for e in client.container.attrs["Config"]["Env"])
    gateway = str(dcfire_topology.subnet[1])
    by_consumer = {(l.consumer, l.target): address for l, (_, address) in links.links.items()}
    assert env["TO_ANSAN"] == "%s:%d" % by_consumer[("client@pangyo", "echo@ansan")]
    assert env["TO_ANSAN"].startswith(gateway + ":")
    assert env["ANSAN_PORT"] == env["TO_ANSAN"].rsplit(":", 1)[1]
    proxies = links.client.proxies()
    assert len(links.links) == 6
    name = links.links[next(l for l in links.links if l.consumer == "client@pangyo" and l.target == "echo@ansan")][0]
    assert proxies[name]["upstream"] == f"{dcfire_topology.service('echo@ansan').ip}:7000"
    for client_name in ("client@pangyo", "client@ansan"):
        for target in ("TO_PANGYO", "TO_ANSAN", "TO_INCHEON"):
            assert reaches(dcfire_topology, client_name, target), (client_name, target)


def test_wan_latency_between_the_declared_pair_only(dcfire_topology):
    far = rtt_ms(dcfire_topology, "client@pangyo", "TO_INCHEON")
    near = rtt_ms(dcfire_topology, "client@pangyo", "TO_ANSAN")
    print(f"WAN rtt pangyo->incheon {far:.0f} ms, pangyo->ansan {near:.0f} ms")
    assert far >= 110, far  # 60 ms each way
    assert near < 60, near


@partition("pangyo", "ansan")
def test_partition_cuts_only_the_links_between_the_two(dcfire, dcfire_topology):
    assert probe(dcfire_topology, "client@pangyo", "TO_ANSAN") == "TimeoutError"
    assert probe(dcfire_topology, "client@ansan", "TO_PANGYO") == "TimeoutError"
    assert reaches(dcfire_topology, "client@pangyo", "TO_PANGYO")
    assert reaches(dcfire_topology, "client@ansan", "TO_INCHEON")
    assert reaches(dcfire_topology, "client@ansan", "TO_ANSAN")
    with socket.create_connection(dcfire_topology.service("echo@ansan").address(7000), 2) as s:
        s.sendall(b"edge")  # the test process still reaches both sites
        assert s.recv(10) == b"edge"
    assert [f.kind for f in dcfire.link_faults] == ["partition"]


def test_partition_was_healed(dcfire_topology):
    assert reaches(dcfire_topology, "client@pangyo", "TO_ANSAN")
    assert reaches(dcfire_topology, "client@ansan", "TO_PANGYO")


@brownout("ansan", latency=100)
def test_brownout_marker_slows_every_link_touching_the_site(dcfire_topology):
    assert rtt_ms(dcfire_topology, "client@pangyo", "TO_ANSAN") >= 180  # into ansan
    assert rtt_ms(dcfire_topology, "client@ansan", "TO_PANGYO") >= 180  # out of ansan
    assert rtt_ms(dcfire_topology, "client@pangyo", "TO_PANGYO") < 60


def test_brownout_was_lifted(dcfire_topology):
    assert rtt_ms(dcfire_topology, "client@pangyo", "TO_ANSAN") < 60


@partition("pangyo", "ansan")
@dc_fire("ansan", storage=False)
def test_fire_cuts_every_link_touching_the_site_and_composes(dcfire, dcfire_topology):
    assert probe(dcfire_topology, "client@pangyo", "TO_ANSAN") == "TimeoutError"
    assert reaches(dcfire_topology, "client@pangyo", "TO_INCHEON")
    dcfire.fires[0].extinguish()  # the fire is out, the partition still holds
    assert probe(dcfire_topology, "client@pangyo", "TO_ANSAN") == "TimeoutError"
    dcfire.restore()
    assert reaches(dcfire_topology, "client@pangyo", "TO_ANSAN")
"""


def test_service_to_service_links(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, HELPERS + textwrap.dedent(TESTS))
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: link faults*",
            "*test_partition_cuts_only_the_links_between_the_two*partition*pangyo|ansan*links cut*",
            "*test_brownout_marker_slows*brownout*ansan*+100 ms*",
        ]
    )
    for line in result.outlines:
        if "WAN rtt" in line:
            print(line)


def test_bad_link_fault_markers_fail_collection(pytester: pytest.Pytester) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        test_inner="""
        from pytest_dcfire import brownout, partition

        @partition("pangyo", "seoul")
        def test_a(): pass

        @brownout("ansan")
        def test_b(): pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid brownout/partition marker(s):",
            "*test_a: @partition('pangyo', 'seoul'): unknown site 'seoul'*valid sites: pangyo, ansan, incheon",
            "*test_b: @brownout('ansan'): give latency=, jitter= or bandwidth= (nothing to do)",
        ]
    )
