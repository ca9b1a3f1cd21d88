"""Network cuts on a real engine: what a burning container can and cannot do."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.helper import AgentError, Helper
from pytest_dcfire.faults.network import NetworkCutter, Targets
from pytest_dcfire.runtime.engine import L_SESSION, Engine

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def site(faults_lab: Any) -> dict[str, Any]:
    """Site `a` with two echo servers, site `b` with one."""
    return {
        "a1": faults_lab.run("a1", "a"),
        "a2": faults_lab.run("a2", "a"),
        "b1": faults_lab.run("b1", "b"),
    }


def test_cut_blackholes_both_ways_and_restore_brings_it_back(
    faults: Any, faults_lab: Any, faults_probe: Any, site: dict[str, Any]
) -> None:
    probe = faults_probe
    a1, a2, b1 = site["a1"], site["a2"], site["b1"]
    a1_ip, b1_ip = faults_lab.ip(a1), faults_lab.ip(b1)
    established = socket.create_connection((a1_ip, 7000), timeout=2)
    established.sendall(b"before")
    assert established.recv(100) == b"before"

    timing = faults.network.cut([a1, a2])
    try:
        assert timing.method == "nftables"
        assert set(timing.offsets_ms) == {a1.name, a2.name}
        assert timing.latency_ms > 0 and timing.skew_ms <= timing.latency_ms
        # An established connection hangs: no reset, no EOF.
        established.settimeout(1.0)
        established.sendall(b"during")
        with pytest.raises(TimeoutError):
            established.recv(100)
        # New connections time out, from the test process and from the other site...
        with pytest.raises(TimeoutError):
            socket.create_connection((a1_ip, 7000), timeout=1.0)
        assert probe.connect_from(b1, "a1") == "TimeoutError"
        # ...and from the burning container outwards.
        assert probe.connect_from(a2, "b1") == "TimeoutError"
        # The other site answers; names resolve both ways (DNS sits outside the fire).
        assert probe.echo_once(b1_ip) == b"ping"
        assert probe.resolve_in(a1, "b1") == b1_ip
        assert probe.resolve_in(b1, "a1") == a1_ip
        # Loopback inside the burning container works.
        code, out = probe.run_py(
            a1,
            "import socket; s = socket.create_connection(('127.0.0.1', 7000), 2); "
            "s.sendall(b'lo'); print(s.recv(10).decode())",
        )
        assert (code, out) == (0, "lo")
    finally:
        restored = faults.network.restore()
    assert set(restored.offsets_ms) == {a1.name, a2.name}
    # The stalled connection carries on: what was sent during the cut arrives.
    established.settimeout(15.0)
    got = b""
    while len(got) < len(b"during"):
        got += established.recv(100)
    assert got == b"during"
    established.close()
    assert probe.echo_once(a1_ip) == b"ping"
    assert probe.connect_from(b1, "a2") == "ok"
    assert probe.connect_from(a2, "b1") == "ok"
    assert faults.network.restore().offsets_ms == {}  # nothing left to undo


def test_iptables_backend_cuts_the_same_way(
    faults: Any, faults_lab: Any, faults_probe: Any, site: dict[str, Any]
) -> None:
    a1, b1 = site["a1"], site["b1"]
    timing = faults.network.cut([a1], backend="iptables")
    try:
        assert timing.method == "iptables"
        assert faults_probe.connect_from(b1, "a1") == "TimeoutError"
        assert faults_probe.resolve_in(a1, "b1") == faults_lab.ip(b1)
    finally:
        faults.network.restore()
    assert faults_probe.connect_from(b1, "a1") == "ok"


def test_disconnect_fallback_restores_address_and_aliases(
    faults_engine: Engine, faults_lab: Any, faults_probe: Any, site: dict[str, Any]
) -> None:
    a2, b1 = site["a2"], site["b1"]
    before = faults_lab.ip(a2)
    cutter = NetworkCutter(faults_engine, Targets(faults_engine), helper=None)
    timing = cutter.cut([a2])
    try:
        assert timing.method == "disconnect"
        assert faults_probe.connect_from(b1, before) != "ok"
    finally:
        cutter.restore()
    assert faults_lab.ip(a2) == before
    assert faults_probe.resolve_in(b1, "a2") == before
    assert faults_probe.connect_from(b1, "a2") == "ok"


def test_foreign_containers_are_refused_and_untouched(
    faults: Any,
    faults_engine: Engine,
    faults_helper: Helper,
    faults_lab: Any,
    faults_probe: Any,
    site: dict[str, Any],
) -> None:
    a1, b1 = site["a1"], site["b1"]
    # Look-alike labels: another (live-looking) session, same role, site and service.
    labels = faults_engine.session.labels("service", site="a", service="a1")
    labels[L_SESSION] = faults_engine.session.id[:-1] + "x"
    lookalike = faults_lab.run("a1-lookalike", "a", labels=labels)
    unlabelled = faults_lab.run("a1-copy", "a", labels={})
    for foreign in (lookalike, unlabelled):
        with pytest.raises(FireError, match="refusing to touch"):
            faults.network.cut([foreign])
        with pytest.raises(FireError, match="refusing to touch"):
            faults.network.cut([a1, foreign])  # all or nothing
        with pytest.raises(FireError, match="refusing to touch"):
            faults.power.pause([foreign])
        with pytest.raises(FireError, match="refusing to touch"):
            faults.power.power_off([foreign])
    assert not faults.network.is_cut(a1)
    for container in (a1, lookalike, unlabelled):
        assert faults_probe.connect_from(b1, faults_lab.ip(container)) == "ok"
        container.reload()
        assert container.status == "running"

    # The agent checks for itself: our container's id with a foreign pid is refused.
    lookalike.reload()
    forged = {"id": a1.id, "pid": lookalike.attrs["State"]["Pid"]}
    with pytest.raises(AgentError) as refused:
        faults_helper.request("cut", targets=[forged])
    assert refused.value.kind == "stale"
    with pytest.raises(AgentError, match="not a full container id"):
        faults_helper.request("cut", targets=[{"id": "../../x", "pid": 1234}])
    assert faults_probe.connect_from(b1, faults_lab.ip(lookalike)) == "ok"


def test_agent_rejects_malformed_requests(faults_helper: Helper) -> None:
    with pytest.raises(AgentError, match="unknown operation"):
        faults_helper.request("rm_rf")
    with pytest.raises(AgentError, match="not a storage pool"):
        faults_helper.request("freeze", names=["not-ours"])
    with pytest.raises(AgentError, match="bad pool name"):
        faults_helper.request("freeze", names=["../etc"])
    assert faults_helper.request("ping").result["session"] == faults_helper.session.id


def test_cut_after_restart_finds_the_new_pid(
    faults: Any, faults_lab: Any, faults_probe: Any, site: dict[str, Any]
) -> None:
    a2, b1 = site["a2"], site["b1"]
    faults.network.cut([a2])
    faults.network.restore()
    a2.restart(timeout=0)  # new pid, new netns: the cached pid is stale
    faults_probe.wait_listening(a2)
    started = time.monotonic()
    faults.network.cut([a2])
    try:
        assert time.monotonic() - started < 10
        assert faults_probe.connect_from(b1, "a2") == "TimeoutError"
    finally:
        faults.network.restore()
    assert faults_probe.connect_from(b1, "a2") == "ok"
