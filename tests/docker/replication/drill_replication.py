"""The drills of a replicated key-value store (run by tests/docker/test_replication.py in a
pytest subprocess, as a user's suite runs).

A primary in pangyo copies every write to a replica in ansan. A workload writes unique
values while sites burn; after a failover the replica's contents are checked against the
acknowledged writes (`lost_writes`): synchronous replication loses none, asynchronous
replication with a lagging replica loses some, every time.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_dcfire import FireController, System, dc_fire
from pytest_dcfire.history import Fail, Indeterminate

if TYPE_CHECKING:
    from pytest_dcfire.drill_workload import DrillWorkload

PRIMARY_SITE, REPLICA_SITE = "pangyo", "ansan"


class AcknowledgedWritesLost(AssertionError):
    """The one failure asynchronous replication is expected to have (its xfail says so, so
    that a recovery timeout or a broken drill still fails the run)."""


def recovered(dcfire: FireController, workload: DrillWorkload) -> None:
    """Wait until the workload's history shows recovery (3 successes in a row after the last
    ignition): calls stuck on the dark site end only at their 0.5 s timeout, so a fixed
    sleep could stop the workload before any call after the fire succeeded."""
    dcfire.eventually(lambda: workload.history.availability().rto is not None, timeout=10)
    time.sleep(0.2)  # and some writes after it


def call(
    addr: tuple[str, int], method: str, path: str, body: bytes = b"", timeout: float = 0.5
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Cluster:
    """The client's view: where the primary is, how to write, fail over and read back."""

    def __init__(self, topology: System) -> None:
        self.addr = {
            PRIMARY_SITE: topology.service("primary").address(8080),
            REPLICA_SITE: topology.service("replica").address(8080),
        }
        self.leader = PRIMARY_SITE
        self.run = uuid.uuid4().hex[:8]  # keys of this test only

    def reset(self, mode: str) -> None:
        for site, role in ((PRIMARY_SITE, "primary"), (REPLICA_SITE, "replica")):
            body = json.dumps({"mode": mode, "role": role}).encode()
            assert call(self.addr[site], "POST", "/reset", body, timeout=5)[0] == 200

    def write(self, n: int) -> None:
        """The workload's operation: write the unique value n to the current primary."""
        status, text = call(self.addr[self.leader], "PUT", f"/k/{self.run}-{n}", str(n).encode())
        if status == 409:
            raise Fail("not the primary")
        if status == 503:
            raise Indeterminate(text.decode())  # stored on the primary, replica unconfirmed
        if status != 200:
            raise Indeterminate(f"HTTP {status}")

    def failover(self) -> None:
        """What an operator does when the primary's site is dark: promote the replica."""
        assert call(self.addr[REPLICA_SITE], "POST", "/promote", timeout=5)[0] == 200
        self.leader = REPLICA_SITE

    def values(self, site: str) -> list[int]:
        """The values of this test's keys that `site` holds (the final read)."""
        status, body = call(self.addr[site], "GET", "/all", timeout=5)
        assert status == 200
        return [int(v) for k, v in json.loads(body).items() if k.startswith(f"{self.run}-")]


@pytest.fixture
def cluster(dcfire_topology: System) -> Cluster:
    return Cluster(dcfire_topology)


@pytest.mark.parametrize(
    "mode",
    [
        "sync",
        pytest.param(
            "async",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AcknowledgedWritesLost,
                reason="asynchronous replication acknowledges writes before the replica has "
                "them: with the replica's link cut first, the primary's fire loses them",
            ),
        ),
    ],
)
def test_primary_fire_loses_no_acknowledged_write(
    dcfire: FireController, cluster: Cluster, mode: str
) -> None:
    cluster.reset(mode)
    with dcfire.workload(cluster.write, threads=2, interval=0.02, name=f"writes-{mode}") as wl:
        time.sleep(0.4)  # replicated writes
        lag = dcfire.fire(REPLICA_SITE, mode="partition")  # the replica falls behind
        time.sleep(0.6)  # sync: writes wait for the replica (indeterminate); async: acked
        dcfire.fire(PRIMARY_SITE)  # the primary's site burns
        lag.extinguish()  # the replica's site is back, the primary's is dark
        cluster.failover()
        recovered(dcfire, wl)  # writes go to the promoted replica
    lost = wl.lost_writes(cluster.values(REPLICA_SITE))
    availability = wl.availability()
    print(lost, availability, sep="\n")
    assert availability.rto is not None
    if not lost.ok:
        raise AcknowledgedWritesLost(str(lost))


@pytest.fixture
def sync_writes(dcfire: FireController, cluster: Cluster) -> Iterator[DrillWorkload]:
    """Writes start before the marker's fire ignites (fixtures come first) and stop in the
    test, so the history holds writes before, during and after the fire."""
    cluster.reset("sync")
    with dcfire.workload(cluster.write, threads=2, interval=0.02, name="writes") as wl:
        time.sleep(0.4)
        yield wl


@dc_fire(each_site=True)
def test_every_site_burns_without_losing_an_acknowledged_write(
    dcfire: FireController, cluster: Cluster, sync_writes: DrillWorkload
) -> None:
    (site,) = dcfire.burning
    if site == PRIMARY_SITE:
        cluster.failover()
        survivor = REPLICA_SITE
    else:  # the sync primary cannot confirm writes until its replica is back
        time.sleep(0.4)
        dcfire.restore()
        survivor = PRIMARY_SITE
    recovered(dcfire, sync_writes)
    sync_writes.stop()
    lost = sync_writes.lost_writes(cluster.values(survivor))
    availability = sync_writes.availability()
    print(lost, availability, sep="\n")
    assert lost.ok, str(lost)
    assert availability.rto is not None
