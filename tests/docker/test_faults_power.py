"""Power loss and pause on a real engine."""

from __future__ import annotations

import socket
from typing import Any

import pytest

pytestmark = pytest.mark.docker


def test_pause_stalls_and_unpause_resumes(faults: Any, faults_lab: Any, faults_probe: Any) -> None:
    c1 = faults_lab.run("p1", "a")
    c2 = faults_lab.run("p2", "a")
    conn = socket.create_connection((faults_lab.ip(c1), 7000), timeout=2)
    timing = faults.power.pause([c1, c2])
    try:
        assert timing.method == "cgroup-freezer"
        assert set(timing.offsets_ms) == {c1.name, c2.name}
        c1.reload()
        assert c1.status == "paused"
        conn.settimeout(1.0)
        conn.sendall(b"held")
        with pytest.raises(TimeoutError):
            conn.recv(100)  # the kernel queues it; the frozen process cannot answer
    finally:
        faults.power.unpause()
    conn.settimeout(5.0)
    assert conn.recv(100) == b"held"
    c2.reload()
    assert c2.status == "running"


def test_power_loss_with_a_network_cut_restores_in_reverse(
    faults: Any, faults_lab: Any, faults_probe: Any
) -> None:
    victim = faults_lab.run("victim", "a")
    peer = faults_lab.run("peer", "b")
    victim.reload()
    old_pid = victim.attrs["State"]["Pid"]
    # The order a power-loss fire uses: network, kill (storage would come next).
    faults.network.cut([victim])
    off = faults.power.power_off([victim])
    assert off.method == "sigkill"
    victim.wait(timeout=10)
    # Undo in reverse: power on (a new netns, without the cut), then the network undo,
    # which finds nothing left to do in the new netns and must not fail.
    faults.power.power_on()
    faults.network.restore()
    victim.reload()
    assert victim.status == "running" and victim.attrs["State"]["Pid"] != old_pid
    faults_probe.wait_listening(victim)
    assert faults_probe.connect_from(peer, "victim") == "ok"
    # The next fire finds the new pid by itself.
    faults.network.cut([victim])
    try:
        assert faults_probe.connect_from(peer, "victim") == "TimeoutError"
    finally:
        faults.network.restore()
    assert faults_probe.connect_from(peer, "victim") == "ok"
