"""Networks that fail partly, on a real engine: a one-way partition, a partition into
groups, and a flaky target, shown with UDP datagrams (TCP needs both directions).

Three sites, a node in each (and a second one in `a`): a TCP echo on 7000 (health) and a
UDP sink on 7001 that counts the datagrams of each tag; the count is read from inside the
node over loopback, which no fault touches. Datagrams are sent from inside the nodes with
`exec python3`. Runs as an inner session, as a user's run would.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from inner_session import ECHO, run_inner

pytestmark = pytest.mark.docker

#: The TCP echo (health) in a thread, and the UDP sink: `count:<tag>` from loopback answers
#: how many datagrams `<tag>:<n>` arrived.
NODE = (
    "import collections, socket, threading\n"
    f"threading.Thread(target=exec, args=({ECHO!r},), daemon=True).start()\n"
    "counts = collections.Counter()\n"
    "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)\n"
    "u.bind(('0.0.0.0', 7001))\n"
    "while True:\n"
    "    d, peer = u.recvfrom(2048)\n"
    "    if d.startswith(b'count:'):\n"
    "        u.sendto(str(counts[d[6:]]).encode(), peer)\n"
    "    else:\n"
    "        counts[d.split(b':')[0]] += 1\n"
)

TOPOLOGY = f"""
sites: [a, b, c]
services:
  node:
    site: [a, b, c]
    image: debian:bookworm-slim
    command: ["python3", "-c", {json.dumps(NODE)}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
  buddy:
    site: a
    image: debian:bookworm-slim
    command: ["python3", "-c", {json.dumps(NODE)}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
"""

#: Run in the sender: argv dst tag n; sends n datagrams, paced so that no socket buffer
#: overflows; prints how many `sendto` refused (EPERM: dropped on this node's way out).
SEND = """
import socket, sys, time
dst, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
refused = 0
for i in range(n):
    try:
        s.sendto(f"{tag}:{i}".encode(), (dst, 7001))
    except OSError:
        refused += 1
    if i % 20 == 19:
        time.sleep(0.002)
print(refused)
"""

#: Run in the receiver: argv tag; how many datagrams of `tag` arrived.
COUNT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"count:" + sys.argv[1].encode(), ("127.0.0.1", 7001))
print(int(s.recv(100)))
"""

HELPERS = f"""
import itertools
import subprocess

import pytest

from pytest_dcfire import flaky_network, partition

SEND = {SEND!r}
COUNT = {COUNT!r}
NAMES = {{"node@a": "node.a", "buddy": "buddy", "node@b": "node.b", "node@c": "node.c"}}
TAGS = itertools.count()


def py(topology, where, code, *args):
    status, out = topology.service(where).exec(["python3", "-c", code, *map(str, args)])
    assert status == 0, out
    return int(out.strip())


def delivered(topology, src, dst, n=20):
    '''How many of n datagrams from `src` to `dst` arrive (counted twice, an exec apart:
    a datagram still in flight would show as a difference).'''
    tag = f"t{{next(TAGS)}}"
    py(topology, src, SEND, topology.service(dst).ip, tag, n)
    got = py(topology, dst, COUNT, tag)
    again = py(topology, dst, COUNT, tag)  # a second exec later: nothing late arrived
    assert again == got, (src, dst, got, again)
    return got


def tables(handle):
    handle.container.reload()
    pid = str(handle.container.attrs["State"]["Pid"])
    return subprocess.run(["nsenter", "-t", pid, "-n", "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


def all_delivered(topology):
    for src in NAMES:
        for dst in NAMES:
            if src != dst:
                assert delivered(topology, src, dst) == 20, (src, dst)
    for handle in topology:
        assert "dcfire" not in tables(handle), handle.name
"""

TESTS = """
@partition("a", "b", one_way=True)
def test_one_way_a_to_b_is_silent_b_to_a_delivered(dcfire, dcfire_topology):
    t = dcfire_topology
    for src in ("node@a", "buddy"):
        assert delivered(t, src, "node@b") == 0, src        # a -> b: vanishes
        assert delivered(t, "node@b", src) == 20, src       # b -> a: delivered
    assert delivered(t, "node@a", "buddy") == 20            # inside a
    for x, y in (("node@a", "node@c"), ("node@b", "node@c")):
        assert delivered(t, x, y) == 20 and delivered(t, y, x) == 20
    # the sender is not told: its sendto never fails
    assert py(t, "node@a", SEND, t.service("node@b").ip, "quiet", 20) == 0
    fault = dcfire.link_faults[0]
    assert fault.kind == "one-way" and fault.target == "a->b"
    print(f"measured: one-way a->b in place in {fault.setup_ms:.1f} ms")
    assert "ip saddr @peers drop" in tables(t.service("node@b"))
    assert "drop" not in tables(t.service("node@a"))


def test_after_the_one_way_partition_all_is_delivered(dcfire_topology):
    all_delivered(dcfire_topology)


def test_one_way_the_other_way_and_lifted(dcfire, dcfire_topology):
    t = dcfire_topology
    with dcfire.partition("b", "a", one_way=True) as fault:
        assert fault.target == "b->a"
        assert delivered(t, "node@b", "node@a") == 0
        assert delivered(t, "node@a", "node@b") == 20
    all_delivered(t)


@partition(["a", "c"], "b")
def test_groups_a_majority_and_a_minority(dcfire_topology):
    t = dcfire_topology
    for x in ("node@a", "buddy", "node@c"):
        assert delivered(t, x, "node@b") == 0, x
        assert delivered(t, "node@b", x) == 0, x
    assert delivered(t, "node@a", "node@c") == 20           # the majority holds together
    assert delivered(t, "node@c", "buddy") == 20


def test_after_the_groups_all_is_delivered(dcfire_topology):
    all_delivered(dcfire_topology)
"""


def test_one_way_and_group_partitions(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, HELPERS + textwrap.dedent(TESTS))
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: link faults*",
            "*test_one_way_a_to_b*one-way*a->b*direct traffic cut*peers: nftables*",
        ]
    )
    print(*(line for line in result.outlines if "measured:" in line), sep="\n")


FLAKY_TESTS = """
def loss(t, src, dst, n=1000):
    return 1 - delivered(t, src, dst, n) / n


def test_flaky_loses_its_share_both_ways(dcfire, dcfire_topology):
    t = dcfire_topology
    with dcfire.flaky("a", loss=0.3) as fault:
        assert fault.kind == "flaky" and fault.detail == "30% loss"
        print(f"measured: flaky a in place in {fault.setup_ms:.1f} ms")
        to_a = loss(t, "node@c", "node@a")
        from_a = loss(t, "node@a", "node@c")
        print(f"measured: flaky 0.3: lost to a {to_a:.3f}, from a {from_a:.3f}")
        assert 0.2 <= to_a <= 0.4, to_a
        assert 0.2 <= from_a <= 0.4, from_a
        assert loss(t, "node@b", "node@c") == 0            # b and c are not flaky
        assert "numgen random mod 100" in tables(t.service("buddy"))
    assert loss(t, "node@c", "node@a") == 0                # lifted: nothing lost
    assert loss(t, "node@a", "node@c") == 0
    all_delivered(t)


@flaky_network("node@b", loss=0.5)
def test_the_marker_twin(dcfire, dcfire_topology):
    t = dcfire_topology
    lost = loss(t, "node@c", "node@b", 400)
    assert 0.35 <= lost <= 0.65, lost
    assert loss(t, "node@c", "node@a", 100) == 0


def test_after_the_marker_nothing_is_lost(dcfire_topology):
    all_delivered(dcfire_topology)
"""


def test_flaky_network(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, HELPERS + textwrap.dedent(FLAKY_TESTS))
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*flaky 0.3: lost to a 0.*, from a 0.*"])
    print(*(line for line in result.outlines if "measured:" in line), sep="\n")


#: A TCP service that greets each connection ("hi"), then echoes: a client sees which way of
#: a link is open (the greeting comes back to it, its echo goes there and back).
GREETER = (
    "import socket, threading\n"
    "def serve(c):\n"
    "    c.sendall(b'hi')\n"
    "    while (d := c.recv(65536)):\n"
    "        c.sendall(d)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(64)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)

LINK_TOPOLOGY = f"""
sites: [a, b]
services:
  greeter:
    site: [a, b]
    image: debian:bookworm-slim
    command: ["python3", "-c", {json.dumps(GREETER)}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
  client:
    site: [a, b]
    image: debian:bookworm-slim
    command: ["sleep", "infinity"]
    environment:
      TO_A: "${{link:greeter@a:7000}}"
      TO_B: "${{link:greeter@b:7000}}"
"""

#: Run in a client: "greet echo" as 0/1 each, through the link named by argv[1].
LINK_PROBE = """
import os, socket, sys
host, port = os.environ[sys.argv[1]].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=3)
s.settimeout(1.5)
def got(n):
    try:
        return s.recv(n)
    except TimeoutError:
        return b""
greet = got(2) == b"hi"
s.sendall(b"ping")
echo = got(10).endswith(b"ping")
print(int(greet), int(echo))
"""

LINK_TESTS = f"""
import pytest

LINK_PROBE = {LINK_PROBE!r}


def through(t, client, link):
    code, out = t.service(client).exec(["python3", "-c", LINK_PROBE, link])
    assert code == 0, out
    return out.strip()


def test_one_way_on_links_cuts_one_stream_of_each(dcfire, dcfire_topology):
    t = dcfire_topology
    assert through(t, "client@a", "TO_B") == "1 1"
    with dcfire.partition("a", "b", one_way=True) as fault:
        assert len(fault.proxies) == 2 and fault.toxics
        assert through(t, "client@a", "TO_B") == "1 0"   # b's greeting comes, a's ping not
        assert through(t, "client@b", "TO_A") == "0 0"   # a's greeting never arrives
        assert through(t, "client@a", "TO_A") == "1 1"   # inside a: untouched
        assert fault.via.startswith("links: timeout-0 toxic + peers: ")
    assert through(t, "client@a", "TO_B") == "1 1"
    assert through(t, "client@b", "TO_A") == "1 1"
"""


def test_one_way_on_links(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, LINK_TOPOLOGY, LINK_TESTS)
    result.assert_outcomes(passed=1)
