"""Redis with Sentinel across three sites: burn the primary's site, and a client that finds
the primary through Sentinel keeps writing after a replica is promoted.

The client speaks RESP (Redis's protocol) itself, in a few lines, so no driver is needed; it
does what Sentinel-aware clients do: ask a sentinel for the primary's address, connect, check
that the node really is the primary (ROLE), then write.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

from pytest_dcfire import RecoveryTimeout

#: Recovery-time objective: ignition to writes accepted again (failover included).
RTO_OBJECTIVE_S = 10.0
#: How long the client waits for any node before trying the next: a dark site hangs.
CLIENT_TIMEOUT_S = 0.5


class RedisError(Exception):
    """An error reply (`-ERR ...`, `-READONLY ...`)."""


def command(addr: tuple[str, int], *args: str, timeout: float = CLIENT_TIMEOUT_S) -> Any:
    """Send one command, return its decoded reply (str, int, list or None)."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        sock.sendall(payload.encode())
        return _reply(sock.makefile("rb"))


def _reply(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if rest == "-1" else stream.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return None if rest == "-1" else [_reply(stream) for _ in range(int(rest))]
    raise ConnectionError(f"unexpected reply {line!r}")


class SentinelClient:
    """Finds the primary through the sentinels, as Sentinel-aware Redis clients do."""

    def __init__(self, topology) -> None:
        self.sentinels = [h for h in topology if h.spec.base == "sentinel"]
        self.nodes = [h for h in topology if h.spec.base == "redis"]

    def node_at(self, host: str):
        """The data node a sentinel names (by container address or by name)."""
        for node in self.nodes:
            if host in (node.ip, node.name.replace("@", ".")):
                return node
        raise LookupError(f"no redis node at {host}")

    def primary(self):
        errors = []
        for sentinel in list(self.sentinels):
            try:
                host, _port = command(
                    sentinel.address(26379), "SENTINEL", "get-master-addr-by-name", "mymaster"
                )
            except (OSError, RedisError) as exc:
                errors.append(f"{sentinel.name}: {type(exc).__name__}: {exc}")
                # Ask the sentinels that answer first next time, as Redis clients do.
                self.sentinels.remove(sentinel)
                self.sentinels.append(sentinel)
                continue
            node = self.node_at(host)
            role = command(node.address(6379), "ROLE")[0]  # a stale answer names a replica
            if role != "master":
                raise RedisError(f"{sentinel.name} names {node.name}, which is a {role}")
            return node
        raise ConnectionError("no sentinel answered: " + "; ".join(errors))

    def write(self, key: str, value: str, replicas: int = 0) -> None:
        """SET on the primary; with replicas > 0, also WAIT until that many copies have it."""
        addr = self.primary().address(6379)
        assert command(addr, "SET", key, value) == "OK"
        if replicas:
            with socket.create_connection(addr, timeout=2.0) as sock:  # WAIT is per connection
                sock.sendall(
                    self._encode("SET", key, value) + self._encode("WAIT", str(replicas), "1000")
                )
                stream = sock.makefile("rb")
                _reply(stream)
                acked = _reply(stream)
            assert acked >= replicas, f"{key}: only {acked} replica(s) acknowledged"

    def read(self, key: str) -> str | None:
        return command(self.primary().address(6379), "GET", key)

    @staticmethod
    def _encode(*args: str) -> bytes:
        return (
            f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        ).encode()


@pytest.fixture
def client(dcfire_topology) -> SentinelClient:
    return SentinelClient(dcfire_topology)


def roles(client: SentinelClient) -> dict[str, str]:
    return {node.name: command(node.address(6379), "ROLE")[0] for node in client.nodes}


@pytest.fixture(autouse=True)
def replicas_in_sync(dcfire, client) -> None:
    """Every test starts with both replicas online (a full sync takes a moment at start) and
    every sentinel knowing both replicas and the two other sentinels. Sentinels learn of
    replicas from the primary's INFO (every 10 s) and of each other over a hello channel: a
    fire before that finds a sentinel alone, which can never reach a quorum."""

    def online() -> bool:
        info = command(client.primary().address(6379), "INFO", "replication")
        return info.count("state=online") == 2

    def mesh() -> bool:
        for sentinel in client.sentinels:
            fields = command(sentinel.address(26379), "SENTINEL", "master", "mymaster")
            state = dict(zip(fields[::2], fields[1::2], strict=True))
            if state["num-slaves"] != "2" or state["num-other-sentinels"] != "2":
                return False
        return True

    dcfire.eventually(online)
    dcfire.eventually(mesh)


def test_three_sentinels_agree_on_one_primary(client):
    answers = {
        command(s.address(26379), "SENTINEL", "get-master-addr-by-name", "mymaster")[0]
        for s in client.sentinels
    }
    assert len(answers) == 1, answers
    primary = client.primary()
    assert sorted(roles(client).values()) == ["master", "slave", "slave"]
    assert command(primary.address(6379), "INFO", "replication").count("connected_slaves:2") == 1


def test_primary_site_fire_promotes_a_replica_and_writes_go_on(dcfire, client):
    old = client.primary()
    batch = uuid.uuid4().hex[:8]
    for i in range(20):  # acknowledged by both replicas before the fire
        client.write(f"{batch}:{i}", "before", replicas=2)

    dcfire.fire(old.site)  # whatever site the primary is in now
    try:
        recovery = dcfire.measure_recovery(lambda: client.write(f"{batch}:probe", "during"))
    except RecoveryTimeout as exc:  # say what the sentinels saw
        logs = "\n".join(f"--- {s.name}\n{s.logs(tail=15)}" for s in client.sentinels)
        raise RecoveryTimeout(f"{exc}\nsentinel logs:\n{logs}") from None
    print(f"RTO: {recovery}")
    assert recovery.rto < RTO_OBJECTIVE_S, recovery
    new = client.primary()
    assert new.site != old.site
    values = command(new.address(6379), "MGET", *(f"{batch}:{i}" for i in range(20)))
    assert values == ["before"] * 20  # acknowledged by both replicas: none lost
    print(f"primary moved from {old.name} to {new.name}")

    # The old primary's site comes back: Sentinel turns it into a replica of the new one, so
    # there is one primary, and it has what was written during the fire.
    dcfire.restore()
    print("restored")
    dcfire.eventually(lambda: command(old.address(6379), "ROLE")[0] == "slave")
    assert sorted(roles(client).values()) == ["master", "slave", "slave"]
    dcfire.eventually(lambda: command(old.address(6379), "GET", f"{batch}:probe") == "during")
