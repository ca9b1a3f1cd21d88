"""Peer cuts on a real engine: the direct traffic between two groups of containers, and
only that, for `partition(a, b)`; composition with a fire's cut, the iptables fallback,
ownership, a helper killed mid-partition, and the reaper."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.helper import Helper, thaw_dead_session
from pytest_dcfire.runtime.engine import L_SESSION, Engine

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sites(faults_lab: Any) -> dict[str, Any]:
    """Site a: a1, a2; site b: b1; site c: c1 (echo servers, DNS aliases = names)."""
    return {name: faults_lab.run(name, name[0]) for name in ("a1", "a2", "b1", "c1")}


def nft_tables(container: Any) -> str:
    """`nft list tables` inside the container's netns, read from this host."""
    container.reload()
    pid = str(container.attrs["State"]["Pid"])
    return subprocess.run(
        ["nsenter", "-t", pid, "-n", "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def ipt_rules(container: Any) -> str:
    container.reload()
    pid = str(container.attrs["State"]["Pid"])
    return subprocess.run(
        ["nsenter", "-t", pid, "-n", "iptables-save"], capture_output=True, text=True, check=False
    ).stdout


def all_reach(probe: Any, sites: dict[str, Any]) -> None:
    for src in sites.values():
        for dst in sites:
            assert probe.connect_from(src, dst) == "ok", (src.name, dst)


def test_peer_cut_drops_only_between_the_two_sides(
    faults: Any, faults_engine: Engine, faults_lab: Any, faults_probe: Any, sites: dict[str, Any]
) -> None:
    probe = faults_probe
    a1, a2, b1, c1 = (sites[n] for n in ("a1", "a2", "b1", "c1"))
    name, timing = faults.peers.cut([a1, a2], [b1])
    try:
        assert timing.method == "nftables"
        assert set(timing.offsets_ms) == {a1.name, a2.name, b1.name}
        table = f"dcfire_{faults_engine.session.id}_{name}"
        for c in (a1, a2, b1):
            assert table in nft_tables(c)
        assert table not in nft_tables(c1)
        # Between the sides: new connections time out (dropped, never refused), both ways,
        # by name and by address.
        assert probe.connect_from(a1, "b1") == "TimeoutError"
        assert probe.connect_from(a2, faults_lab.ip(b1)) == "TimeoutError"
        assert probe.connect_from(b1, "a1") == "TimeoutError"
        assert probe.connect_from(b1, faults_lab.ip(a2)) == "TimeoutError"
        # Within a side, to the third site, from the third site, from the test process.
        assert probe.connect_from(a1, "a2") == "ok"
        assert probe.connect_from(a1, "c1") == "ok"
        assert probe.connect_from(b1, "c1") == "ok"
        assert probe.connect_from(c1, "a1") == "ok"
        assert probe.connect_from(c1, "b1") == "ok"
        for c in (a1, b1):
            assert probe.echo_once(faults_lab.ip(c)) == b"ping"
        # DNS still answers on both sides.
        assert probe.resolve_in(a1, "b1") == faults_lab.ip(b1)
        assert probe.resolve_in(b1, "a1") == faults_lab.ip(a1)
    finally:
        restored = faults.peers.restore(name)
    assert set(restored.offsets_ms) == {a1.name, a2.name, b1.name}
    all_reach(probe, sites)
    for c in sites.values():
        assert "dcfire" not in nft_tables(c)
    assert faults.peers.restore(name).offsets_ms == {}  # nothing left to undo


def test_peer_cut_composes_with_a_fire_cut_both_orders(
    faults: Any, faults_probe: Any, sites: dict[str, Any]
) -> None:
    probe = faults_probe
    a1, b1, c1 = sites["a1"], sites["b1"], sites["c1"]
    # Partition, then a fire of a1 on top, then the fire restored: the partition holds.
    name, _ = faults.peers.cut([a1], [b1])
    faults.network.cut([a1])
    assert probe.connect_from(c1, "a1") == "TimeoutError"
    faults.network.restore([a1])
    assert probe.connect_from(c1, "a1") == "ok"
    assert probe.connect_from(b1, "a1") == "TimeoutError"
    assert probe.connect_from(a1, "b1") == "TimeoutError"
    faults.peers.restore(name)
    assert probe.connect_from(b1, "a1") == "ok"
    # Fire first, then a partition, then the partition lifted: the fire holds.
    faults.network.cut([a1])
    name, _ = faults.peers.cut([a1], [b1])
    faults.peers.restore(name)
    assert probe.connect_from(c1, "a1") == "TimeoutError"
    faults.network.restore([a1])
    all_reach(probe, sites)


def test_two_partitions_are_undone_one_at_a_time(
    faults: Any, faults_probe: Any, sites: dict[str, Any]
) -> None:
    probe = faults_probe
    a1, b1, c1 = sites["a1"], sites["b1"], sites["c1"]
    ab, _ = faults.peers.cut([a1], [b1])
    ac, _ = faults.peers.cut([a1], [c1])
    assert probe.connect_from(a1, "b1") == "TimeoutError"
    assert probe.connect_from(a1, "c1") == "TimeoutError"
    faults.peers.restore(ab)
    assert probe.connect_from(a1, "b1") == "ok"
    assert probe.connect_from(c1, "a1") == "TimeoutError"
    faults.peers.restore(ac)
    all_reach(probe, sites)


def test_iptables_backend_cuts_the_same_way(
    faults: Any, faults_engine: Engine, faults_probe: Any, sites: dict[str, Any]
) -> None:
    probe = faults_probe
    a1, b1 = sites["a1"], sites["b1"]
    name, timing = faults.peers.cut([a1], [b1], backend="iptables")
    chain = f"DCFP{name}-{faults_engine.session.id}"[:28]
    try:
        assert timing.method == "iptables"
        assert chain in ipt_rules(a1) and chain in ipt_rules(b1)
        assert probe.connect_from(b1, "a1") == "TimeoutError"
        assert probe.connect_from(a1, "b1") == "TimeoutError"
        assert probe.connect_from(a1, "c1") == "ok"
    finally:
        faults.peers.restore(name)
    assert chain not in ipt_rules(a1) and chain not in ipt_rules(b1)
    all_reach(probe, sites)


def test_foreign_containers_are_refused_and_untouched(
    faults: Any,
    faults_engine: Engine,
    faults_lab: Any,
    faults_probe: Any,
    sites: dict[str, Any],
) -> None:
    a1, b1 = sites["a1"], sites["b1"]
    foreign = faults_lab.run("b1-copy", "b", labels={})
    with pytest.raises(FireError, match="refusing to touch"):
        faults.peers.cut([a1], [b1, foreign])
    assert faults.peers.active == []
    assert "dcfire" not in nft_tables(a1) and "dcfire" not in nft_tables(foreign)
    assert faults_probe.connect_from(foreign, "a1") == "ok"


def test_agent_refuses_bad_block_lists(faults_helper: Helper, sites: dict[str, Any]) -> None:
    from pytest_dcfire.faults.helper import AgentError

    a1 = sites["a1"]
    a1.reload()
    target = {"id": a1.id, "pid": a1.attrs["State"]["Pid"]}
    for block, message in (
        (["127.0.0.1"], "refusing to block 127.0.0.1"),
        (["0.0.0.0"], "refusing to block 0.0.0.0"),
        (["10.0.0.300"], "is not an IPv4 address"),
        ("10.0.0.1", "block must be a list"),
    ):
        with pytest.raises(AgentError, match=message):
            faults_helper.request("peer_cut", name="bad", targets=[{**target, "block": block}])
    with pytest.raises(AgentError, match="bad peer cut name"):
        faults_helper.request("peer_cut", name="../x", targets=[{**target, "block": []}])
    assert "bad" not in faults_helper.status()["peers"]


def test_helper_killed_mid_partition_is_recreated_and_the_cut_holds(
    faults: Any, faults_lab: Any, faults_helper: Helper, faults_probe: Any, sites: dict[str, Any]
) -> None:
    a1, b1 = sites["a1"], sites["b1"]
    name, _ = faults.peers.cut([a1], [b1])
    old = faults_helper.container_id
    assert old is not None
    faults_lab.client.api.kill(old)
    status = faults_helper.status()  # a new helper adopts the journal and cuts again
    assert faults_helper.container_id != old
    assert set(status["peers"][name]) == {a1.id, b1.id}
    assert faults_probe.connect_from(b1, "a1") == "TimeoutError"
    faults.peers.restore(name)
    assert faults_probe.connect_from(b1, "a1") == "ok"
    assert faults_helper.status()["peers"] == {}


def nft_ruleset(container: Any) -> str:
    container.reload()
    pid = str(container.attrs["State"]["Pid"])
    return subprocess.run(
        ["nsenter", "-t", pid, "-n", "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def test_one_way_and_flaky_keep_their_shape_across_a_new_helper(
    faults: Any, faults_lab: Any, faults_helper: Helper, sites: dict[str, Any]
) -> None:
    """The journal keeps each target's rule (drop chains, loss, every address): a helper
    killed mid-fault is replaced by one that makes the same tables again."""
    a1, b1, c1 = sites["a1"], sites["b1"], sites["c1"]
    one_way, _ = faults.peers.cut([a1], [b1], one_way=True)
    flaky, _ = faults.peers.flaky([c1], 30)
    try:
        old = faults_helper.container_id
        assert old is not None
        faults_lab.client.api.kill(old)
        status = faults_helper.status()  # a new helper adopts the journal
        assert faults_helper.container_id != old
        assert status["peers"][one_way][b1.id]["drop"] == ["in"]
        assert status["peers"][one_way][a1.id]["drop"] == []
        assert status["peers"][flaky][c1.id]["loss"] == 30
        assert status["peers"][flaky][c1.id]["everyone"] is True
        assert "ip saddr @peers drop" in nft_ruleset(b1)
        assert "drop" not in nft_ruleset(a1)  # the sender's table has no rule
        assert "numgen random mod 100 < 30" in nft_ruleset(c1)
    finally:
        faults.peers.restore(one_way)
        faults.peers.restore(flaky)
    for c in (a1, b1, c1):
        assert "dcfire" not in nft_ruleset(c)
    assert faults_helper.status()["peers"] == {}


def test_agent_refuses_bad_rule_shapes(faults_helper: Helper, sites: dict[str, Any]) -> None:
    from pytest_dcfire.faults.helper import AgentError

    a1 = sites["a1"]
    a1.reload()
    target = {"id": a1.id, "pid": a1.attrs["State"]["Pid"], "block": []}
    for extra, message in (
        ({"loss": 0}, "loss must be a percent from 1 to 100"),
        ({"drop": ["up"]}, "drop must be a list of 'in', 'out'"),
        ({"everyone": "yes"}, "everyone must be true or false"),
    ):
        with pytest.raises(AgentError, match=message):
            faults_helper.request("peer_cut", name="bad", targets=[{**target, **extra}])
    assert "bad" not in faults_helper.status()["peers"]


def test_dead_man_switch_undoes_a_peer_cut(
    faults: Any, faults_helper: Helper, faults_probe: Any, sites: dict[str, Any]
) -> None:
    a1, b1 = sites["a1"], sites["b1"]
    faults.peers.cut([a1], [b1])
    assert faults_probe.connect_from(b1, "a1") == "TimeoutError"
    faults_helper.kill_agent_for_test()  # its stdin closes: the agent undoes everything
    deadline = time.monotonic() + 15
    while faults_probe.connect_from(b1, "a1") != "ok":
        assert time.monotonic() < deadline, "the peer cut outlived its agent"
    assert "dcfire" not in nft_tables(a1) and "dcfire" not in nft_tables(b1)
    assert faults_helper.status()["peers"] == {}
    faults.peers.restore()  # the client's record: nothing left to undo, no error


#: A session that cuts two containers apart with iptables, SIGKILLs its own agent (so that
#: nothing undoes it), prints what it made and waits to be SIGKILLed.
OWNER = textwrap.dedent(
    """
    import json, sys, time
    from pytest_dcfire.faults.helper import Helper
    from pytest_dcfire.faults.network import Targets
    from pytest_dcfire.faults.peers import PeerCutter
    from pytest_dcfire.runtime.engine import Engine, SessionIdentity

    image = sys.argv[1]
    engine = Engine.connect(SessionIdentity.new(worker="owner"))
    helper = Helper(engine).start()
    api = engine.client.api
    ids = []
    for name, site in (("pa", "a"), ("pb", "b")):
        created = api.create_container(
            image,
            name=engine.session.name(name),
            labels=engine.session.labels("service", site=site, service=name),
            host_config=api.create_host_config(init=True),
            detach=True,
        )
        api.start(created["Id"])
        ids.append(created["Id"])
    time.sleep(1.0)
    PeerCutter(engine, Targets(engine), helper).cut([ids[0]], [ids[1]], backend="iptables")
    agent_pid = helper.request("ping").result["pid"]
    kill = f"import os; os.kill({agent_pid}, 9)"
    api.exec_start(api.exec_create(helper.container_id, ["python3", "-c", kill]))
    print(json.dumps({"session": engine.session.id, "a": ids[0], "b": ids[1]}), flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def dead_owner(faults_echo_image: str, faults_engine: Engine) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, faults_echo_image], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    info: dict[str, str] = json.loads(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    yield info
    flt = {"label": f"{L_SESSION}={info['session']}"}
    for c in faults_engine.client.containers.list(all=True, filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True)
    for v in faults_engine.client.volumes.list(filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            v.remove(force=True)


def test_reaper_undoes_a_dead_sessions_iptables_peer_cut(
    dead_owner: dict[str, str], faults_engine: Engine, faults_helper: Helper, faults_probe: Any
) -> None:
    client = faults_engine.client
    a, b = client.containers.get(dead_owner["a"]), client.containers.get(dead_owner["b"])
    a_ip = a.attrs["NetworkSettings"]["IPAddress"]
    faults_probe.wait_listening(a)
    assert faults_probe.connect_from(b, a_ip) == "TimeoutError"  # nobody undid it
    done = thaw_dead_session(faults_helper, dead_owner["session"])
    assert f"removed cut on {a.id[:12]}" in done and f"removed cut on {b.id[:12]}" in done
    assert faults_probe.connect_from(b, a_ip) == "ok"
    assert "DCFP" not in ipt_rules(a) and "DCFP" not in ipt_rules(b)
