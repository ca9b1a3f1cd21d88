"""PostgreSQL failover between two sites: what synchronous replication keeps, and what
asynchronous replication loses, when the primary's site burns.

The test plays the failover orchestrator (what Patroni or an operator does): it promotes the
replica, fences the old primary before its site comes back, and rebuilds it as a replica of
the new primary. It talks to PostgreSQL with `psql` inside the containers (`handle.exec`),
so no Python driver is needed.
"""

from __future__ import annotations

import uuid

import pytest

from pytest_dcfire import dc_fire

#: Recovery-time objective for the synchronous pair: ignition to writes accepted in ansan.
RTO_OBJECTIVE_S = 10.0


class Node:
    """One PostgreSQL node of the topology, driven through `psql` in its container."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.name = handle.name

    def sql(self, *statements: str) -> str:
        """Run each statement in its own transaction (autocommit); fail on the first error."""
        argv = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
        for statement in statements:
            argv += ["-c", statement]
        code, output = self.handle.exec(argv)
        if code != 0:
            raise AssertionError(f"{self.name}: psql exited {code}: {output.strip()}")
        return output.strip()

    def in_recovery(self) -> bool:
        return self.sql("SELECT pg_is_in_recovery()") == "t"

    def promote(self) -> None:
        """The failover decision: this replica becomes the primary (it stops replaying WAL)."""
        assert self.sql("SELECT pg_promote(wait => true, wait_seconds => 30)") == "t"

    def fence(self) -> None:
        code, output = self.handle.exec(["pg-fence"])
        assert code == 0, output

    def accepts_connections(self) -> bool:
        return self.handle.exec(["pg_isready", "-h", "127.0.0.1", "-q"])[0] == 0

    def rebuild_from(self, primary: Node, name: str) -> None:
        code, output = self.handle.exec(["pg-rebuild", primary.name, name])
        assert code == 0, f"{self.name}: pg-rebuild: {output}"


@pytest.fixture(scope="module")
def nodes(dcfire_topology) -> dict[str, Node]:
    nodes = {h.name: Node(h) for h in dcfire_topology}
    for name in ("primary", "async-primary"):
        nodes[name].sql("CREATE TABLE IF NOT EXISTS ledger (id text PRIMARY KEY, batch text)")
    return nodes


def count(node: Node, batch: str) -> int:
    return int(node.sql(f"SELECT count(*) FROM ledger WHERE batch = '{batch}'"))


def insert_rows(node: Node, batch: str, n: int) -> None:
    """n rows, n commits; each acknowledged (psql stops at the first error)."""
    node.sql(*(f"INSERT INTO ledger VALUES ('{batch}-{i}', '{batch}')" for i in range(n)))


@pytest.fixture
def batch() -> str:
    return uuid.uuid4().hex[:8]


def test_a_commit_waits_for_the_replica(dcfire, nodes, batch):
    """Synchronous commit: once the primary acknowledges, the replica has the row already."""
    primary, replica = nodes["primary"], nodes["replica"]
    states = "SELECT application_name, sync_state FROM pg_stat_replication"
    dcfire.eventually(lambda: primary.sql(states) == "replica|sync")  # the replica connected
    insert_rows(primary, batch, 1)
    assert count(replica, batch) == 1  # read at once, no waiting: the commit waited for it


@pytest.fixture
def committed_before_the_fire(nodes, batch) -> int:
    """Fixtures run before the marker ignites: these 50 commits are all acknowledged first."""
    insert_rows(nodes["primary"], batch, 50)
    return 50


@dc_fire("pangyo")
def test_failover_keeps_every_committed_row(dcfire, nodes, batch, committed_before_the_fire):
    old, new = nodes["primary"], nodes["replica"]
    new.promote()

    def write_in_ansan() -> None:
        new.sql(f"INSERT INTO ledger VALUES ('{batch}-probe-{uuid.uuid4().hex}', 'probe')")

    recovery = dcfire.measure_recovery(write_in_ansan)
    print(f"RTO: {recovery}")
    assert recovery.rto < RTO_OBJECTIVE_S, recovery
    assert count(new, batch) == committed_before_the_fire  # nothing acknowledged was lost

    # The old primary must never serve again as a second primary: fence it while its site is
    # still dark, then bring the site back.
    old.fence()
    dcfire.restore()
    assert not old.accepts_connections()

    # Rebuild it as a replica of the new primary, and make the new primary wait for it.
    old.rebuild_from(new, "primary")
    dcfire.eventually(
        lambda: (
            "primary|streaming"
            in new.sql("SELECT application_name, state FROM pg_stat_replication")
        )
    )
    new.sql("ALTER SYSTEM SET synchronous_standby_names = 'primary'", "SELECT pg_reload_conf()")
    dcfire.eventually(lambda: new.sql("SELECT sync_state FROM pg_stat_replication") == "sync")
    assert old.in_recovery()
    with pytest.raises(AssertionError, match="read-only transaction"):
        insert_rows(old, batch + "-split", 1)  # no split brain: the old primary refuses writes
    insert_rows(new, batch + "-after", 1)
    assert count(old, batch + "-after") == 1  # synchronous again, in the other direction
    assert count(old, batch) == committed_before_the_fire


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="asynchronous replication acknowledges commits the replica never received: "
    "a fire in the primary's site loses them",
)
def test_async_failover_keeps_acknowledged_rows(dcfire, nodes, batch):
    old, new = nodes["async-primary"], nodes["async-replica"]
    insert_rows(old, batch + "-synced", 1)
    dcfire.eventually(lambda: count(new, batch + "-synced") == 1)  # replication works

    # The WAN to ansan goes first, so the replica lags; the primary keeps acknowledging.
    wan_cut = dcfire.fire("ansan", mode="partition")
    acknowledged = 20
    insert_rows(old, batch, acknowledged)
    assert count(old, batch) == acknowledged
    # Then pangyo burns, with the only copy of those rows; ansan comes back, and is promoted.
    dcfire.fire("pangyo")
    wan_cut.extinguish()
    new.promote()
    dcfire.eventually(lambda: not new.in_recovery())
    lost = acknowledged - count(new, batch)
    print(f"{lost} of {acknowledged} acknowledged rows lost")

    # Fence and rebuild the old primary first, so the session goes on with a sane pair.
    old.fence()
    dcfire.restore()
    old.rebuild_from(new, "async-primary")
    dcfire.eventually(old.in_recovery)

    assert lost == 0, f"{lost} of {acknowledged} acknowledged rows lost in the fire"
