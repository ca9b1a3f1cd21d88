"""The demo chaos suite: burn a site, keep serving from the other, get everything back."""

from __future__ import annotations

import http.client
import socket

import pytest

from pytest_dcfire import dc_fire


def put(addr: tuple[str, int], key: str, value: str, timeout: float = 2.0) -> None:
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("PUT", f"/k/{key}", body=value.encode())
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def get(addr: tuple[str, int], key: str, timeout: float = 2.0) -> str | None:
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("GET", f"/k/{key}")
        response = conn.getresponse()
        body = response.read().decode()
        return body if response.status == 200 else None
    finally:
        conn.close()


@pytest.fixture
def pangyo(dcfire_topology):
    return dcfire_topology.service("kv@pangyo").address(8080)


@pytest.fixture
def ansan(dcfire_topology):
    return dcfire_topology.service("kv@ansan").address(8080)


def test_both_sites_serve(pangyo, ansan):
    put(pangyo, "greeting", "hello from pangyo")
    put(ansan, "greeting", "hello from ansan")
    assert get(pangyo, "greeting") == "hello from pangyo"
    assert get(ansan, "greeting") == "hello from ansan"


@dc_fire("pangyo")
def test_ansan_serves_while_pangyo_burns(dcfire, pangyo, ansan):
    assert dcfire.burning == ("pangyo",)
    put(ansan, "during-fire", "still here")
    assert get(ansan, "during-fire") == "still here"
    with pytest.raises((TimeoutError, socket.timeout)):
        get(pangyo, "greeting", timeout=0.5)  # a dark site does not answer, it hangs


def test_data_survives_a_fire(dcfire, pangyo):
    put(pangyo, "before", "written before the fire")
    with dcfire.fire("pangyo"), pytest.raises(OSError):
        get(pangyo, "before", timeout=0.5)
    # The site is restored and health-checked: the data written before is intact.
    assert get(pangyo, "before") == "written before the fire"


def test_failover_client_recovers_within_objective(dcfire, pangyo, ansan):
    def write_anywhere() -> None:
        for addr in (pangyo, ansan):  # a client that tries the primary site first
            try:
                put(addr, "rto-probe", "ok", timeout=0.3)
                return
            except OSError:
                continue
        raise ConnectionError("no site accepted the write")

    dcfire.fire("pangyo")
    recovery = dcfire.measure_recovery(write_anywhere)
    assert recovery.rto < 5, recovery


@pytest.fixture
def synced_before_the_fire(pangyo):
    """Fixtures run before a marker ignites: this write is acknowledged (fsynced) first."""
    put(pangyo, "synced", "on disk before the power went out")


@dc_fire("pangyo", mode="power-loss")
def test_power_loss_keeps_synced_data(dcfire, dcfire_topology, pangyo, synced_before_the_fire):
    kv = dcfire_topology.service("kv@pangyo").container
    kv.reload()
    assert kv.status == "exited"  # the power is out
    dcfire.restore()  # power comes back: the same container restarts from the same disk
    kv.reload()
    assert kv.status == "running"
    assert get(pangyo, "synced") == "on disk before the power went out"
