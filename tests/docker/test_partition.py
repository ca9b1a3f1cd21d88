"""`partition(a, b)` is a real WAN cut: direct traffic between the two sites vanishes.

Three sites with an echo server in each (and a second one in `a`), no links at all: the
services talk to each other directly, by DNS name and by address, as PostgreSQL replicas or
etcd peers do. During a partition of a and b, connections between them time out (dropped,
never refused or reset), both ways, while each site still reaches itself, the third site
and the test process, and DNS still answers. A container adopted into a site (on one more
network than the topology's) is cut too, on all its addresses. Runs as an inner session.
"""

from __future__ import annotations

import contextlib
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest
from inner_session import ECHO, run_inner

pytestmark = pytest.mark.docker

TOPOLOGY = f"""
sites: [a, b, c]
services:
  echo:
    site: [a, b, c]
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
  buddy:
    site: a
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
"""

#: Run inside a service: for each destination at once, a line `DESTINATION RESULT`, where
#: RESULT is "ok" or the class of the error a new connection got (so that the drops of one
#: check time out together, not one after the other).
PROBE = """
import socket, sys, threading
got = {}
def probe(dst):
    try:
        socket.create_connection((dst, 7000), 1.5).close()
        got[dst] = "ok"
    except OSError as e:
        got[dst] = type(e).__name__
threads = [threading.Thread(target=probe, args=(dst,)) for dst in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
for dst in sys.argv[1:]:
    print(dst, got[dst])
"""

HELPERS = f"""
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from pytest_dcfire import partition
from pytest_dcfire.plugin import SESSION_KEY

PROBE = {PROBE!r}
#: instance -> its DNS name on the topology network
NAMES = {{"echo@a": "echo.a", "buddy": "buddy", "echo@b": "echo.b", "echo@c": "echo.c"}}


# plan: {{source: [destination, ...]}}; every probe at once; {{(source, destination): result}}
def probe(topology, plan):
    def run(src):
        code, out = topology.service(src).exec(["python3", "-c", PROBE, *plan[src]])
        assert code == 0, out
        lines = [line.split() for line in out.splitlines() if line.strip()]
        assert [dst for dst, _ in lines] == list(plan[src]), out
        return {{(src, dst): result for dst, result in lines}}

    found = {{}}
    with ThreadPoolExecutor(len(plan)) as pool:
        for results in pool.map(run, plan):
            found.update(results)
    return found


def connect(topology, src, dst):
    return probe(topology, {{src: [dst]}})[src, dst]


def resolve(topology, src, name):
    code, out = topology.service(src).exec(
        ["python3", "-c", f"import socket; print(socket.gethostbyname({{name!r}}))"]
    )
    assert code == 0, out
    return out.strip()


def edge_reaches_everything(topology):
    for handle in topology:
        if handle.spec.ports:
            with socket.create_connection(handle.address(7000), 2) as s:
                s.sendall(b"edge")
                assert s.recv(10) == b"edge", handle.name


def tables(handle):
    handle.container.reload()
    pid = str(handle.container.attrs["State"]["Pid"])
    return subprocess.run(["nsenter", "-t", pid, "-n", "nft", "list", "tables"],
                          capture_output=True, text=True, check=True).stdout


def assert_all_reachable(topology):
    destinations = [*NAMES.values(), *(topology.service(n).ip for n in NAMES)]
    found = probe(topology, {{src: destinations for src in NAMES}})
    assert found == {{(src, dst): "ok" for src in NAMES for dst in destinations}}
    edge_reaches_everything(topology)
    for handle in topology:
        assert "dcfire" not in tables(handle), handle.name


def assert_a_and_b_split(topology):
    b_ip = topology.service("echo@b").ip
    plan = {{
        "echo@a": ["echo.b", b_ip],
        "buddy": ["echo.b", b_ip],
        "echo@b": ["echo.a", topology.service("buddy").ip],
    }}
    found = probe(topology, plan)
    assert found == {{(src, dst): "TimeoutError" for src in plan for dst in plan[src]}}
"""

TESTS = """
@partition("a", "b")
def test_partition_cuts_the_direct_traffic_between_the_two(dcfire, dcfire_topology):
    t = dcfire_topology
    assert_a_and_b_split(t)
    assert connect(t, "echo@a", "buddy") == "ok"            # a -> a
    assert connect(t, "buddy", t.service("echo@a").ip) == "ok"
    assert connect(t, "echo@a", "echo.c") == "ok"           # a -> c
    assert connect(t, "echo@b", "echo.c") == "ok"           # b -> c
    assert connect(t, "echo@c", "echo.a") == "ok"           # c -> a
    assert connect(t, "echo@c", "echo.b") == "ok"           # c -> b
    edge_reaches_everything(t)                              # the test process -> all
    assert resolve(t, "echo@a", "echo.b") == t.service("echo@b").ip  # DNS still answers
    assert resolve(t, "echo@b", "buddy") == t.service("buddy").ip
    fault = dcfire.link_faults[0]
    assert fault.detail == "direct traffic cut" and fault.proxies == []
    assert fault.via == "peers: nftables"
    assert set(fault.steps[0].offsets_ms) == {"echo@a", "buddy", "echo@b"}


def test_after_the_partition_everything_is_reachable(dcfire_topology):
    assert_all_reachable(dcfire_topology)


def test_a_fire_inside_a_partition_and_the_reverse(dcfire, dcfire_topology):
    t = dcfire_topology
    split = dcfire.partition("a", "b")
    fire = dcfire.fire("a")
    assert connect(t, "echo@c", "echo.a") == "TimeoutError"
    fire.extinguish()                                       # the fire is out...
    assert connect(t, "echo@c", "echo.a") == "ok"
    assert_a_and_b_split(t)                                 # ...the partition holds
    split.lift()
    assert_all_reachable(t)
    fire = dcfire.fire("a")
    with dcfire.partition("a", "b"):
        assert connect(t, "echo@c", "echo.a") == "TimeoutError"
    assert connect(t, "echo@c", "echo.a") == "TimeoutError"  # the partition is lifted,
    fire.extinguish()                                         # the fire held until now
    assert_all_reachable(t)


def test_a_power_loss_inside_a_partition_keeps_it(dcfire, dcfire_topology):
    t = dcfire_topology
    with dcfire.partition("a", "b"):
        before = t.service("echo@a").container.attrs["State"]["StartedAt"]
        with dcfire.fire("a", mode="power-loss"):
            pass  # restored: a's containers start again, in new network namespaces
        t.service("echo@a").container.reload()
        assert t.service("echo@a").container.attrs["State"]["StartedAt"] != before
        for name in ("echo@a", "buddy"):  # b's tables alone would split them: look inside
            assert "dcfire_" in tables(t.service(name)), name
        assert_a_and_b_split(t)                             # cut again at once
        assert connect(t, "echo@c", "echo.a") == "ok"
    assert_all_reachable(t)


def test_an_adopted_container_is_cut_on_all_its_addresses(request, dcfire, dcfire_topology):
    t = dcfire_topology
    client = docker.from_env()
    outsider = client.containers.get(os.environ["OUTSIDER"])
    t.network.connect(outsider)  # now on the default bridge and on the topology network
    try:
        outsider.reload()
        nets = outsider.attrs["NetworkSettings"]["Networks"]
        addresses = {n["IPAddress"] for n in nets.values()}
        assert len(addresses) == 2
        on_topology = nets[t.network.name]["IPAddress"]
        member = t.adopt(outsider, site="b", name="outsider")
        with dcfire.partition("a", "b"):
            assert connect(t, "echo@a", on_topology) == "TimeoutError"
            assert connect(t, "echo@c", on_topology) == "ok"
            helper = request.config.stash[SESSION_KEY].faults.helper
            peers = next(iter(helper.status()["peers"].values()))
            assert addresses <= set(peers[t.service("echo@a").container.id]["block"])
            assert set(peers[outsider.id]["block"]) == {
                t.service("echo@a").ip, t.service("buddy").ip
            }
            code, out = outsider.exec_run(["python3", "-c", PROBE, "echo.a"])
            assert out.decode().split() == ["echo.a", "TimeoutError"]
        assert connect(t, "echo@a", on_topology) == "ok"
        t.release(member)
    finally:
        t.network.disconnect(outsider, force=True)
        client.close()
"""


@pytest.fixture
def outsider() -> Iterator[Any]:
    """An echo container the plugin did not make (default bridge only); removed after."""
    client = docker.from_env()
    container = client.containers.run(
        "debian:bookworm-slim",
        ["python3", "-c", ECHO],
        name=f"partition-outsider-{uuid.uuid4().hex[:8]}",
        labels={"pytest-dcfire-tests.partition": "outsider"},
        init=True,
        detach=True,
    )
    yield container
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)
    client.close()


def test_partition_is_a_wan_cut(pytester: pytest.Pytester, outsider: Any) -> None:
    pytester._monkeypatch.setenv("OUTSIDER", outsider.id)
    result = run_inner(pytester, TOPOLOGY, HELPERS + textwrap.dedent(TESTS))
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: link faults*",
            "*test_partition_cuts_the_direct*partition*a|b*direct traffic cut*0*peers: nftables*",
        ]
    )
