"""The agent's journal: written atomically, read back, replayed by a new agent, and always
ahead of what it describes (a fault is journalled before it is applied; undone faults leave
it after). Runs the real agent on a temporary state root with iptables and FIFREEZE
replaced by recorders, so no container and no privilege is needed."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire.faults.agent import cuts as cuts_module
from pytest_dcfire.faults.agent import peers as peers_module
from pytest_dcfire.faults.agent.agent import Agent
from pytest_dcfire.faults.agent.journal import Journal, read_journal
from pytest_dcfire.faults.agent.protocol import CutEntry, PoolEntry
from pytest_dcfire.faults.agent.targets import Target

SESSION = "s0test"
CID = "a" * 64
OTHER = "b" * 64


def fake_target(cid: str) -> Target:
    """A target without a container: its netns is ours (only the recorder sees it)."""
    t = object.__new__(Target)
    t.cid, t.pid, t.pidfd = cid, 4242, -1
    t.netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    t.netns_ino = os.fstat(t.netns).st_ino
    return t


class World:
    """The agent under test and a log of what it applied, with the journal at that moment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = io.StringIO()
        self.agent = Agent(SESSION, self.out, root=str(root))
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.agent.nf.iptables = self._iptables
        self.agent.pools.freeze_one = self._freeze
        self.agent.peers.own_addresses = lambda target: []  # type: ignore[method-assign]

    def journal(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / SESSION / "journal.json").read_text())
        return data

    def _iptables(self, netns: int, rules: str) -> None:
        first = rules.splitlines()[1].split()  # ":CHAIN - [0:0]" or "-D INPUT -j CHAIN"
        action, chain = ("add", first[0][1:]) if first[0].startswith(":") else ("remove", first[-1])
        self.events.append((f"{action} {chain}", self.journal()))

    def _freeze(self, name: str, freeze: bool) -> float:
        self.events.append((f"{'freeze' if freeze else 'thaw'} {name}", self.journal()))
        return 1.0

    def request(self, **request: Any) -> dict[str, Any]:
        self.out.seek(0)
        self.out.truncate()
        self.agent.handle({"id": 1, **request})
        answer: dict[str, Any] = json.loads(self.out.getvalue())
        assert answer["ok"], answer
        return answer


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    def parse(raw: Any) -> list[Target]:
        return [fake_target(str(item["id"])) for item in raw]

    monkeypatch.setattr(cuts_module, "parse_targets", parse)
    monkeypatch.setattr(peers_module, "parse_targets", parse)
    w = World(tmp_path)
    yield w
    w.agent.undone = True  # nothing real to undo


def test_write_is_atomic_and_reads_back(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), SESSION)
    assert journal.read() is None
    entry: CutEntry = {"pid": 5, "netns": 9, "method": "iptables"}
    peer: CutEntry = {"pid": 6, "netns": 9, "method": "iptables", "block": ["10.0.0.1"]}
    journal.write({}, {CID: entry}, {"p1": {OTHER: peer}})
    assert sorted(os.listdir(tmp_path)) == ["journal.json"]  # no temporary file left
    data = journal.read()
    assert data is not None
    assert data["session"] == SESSION
    assert data["cuts"] == {CID: entry}
    assert data["peers"]["p1"][OTHER]["block"] == ["10.0.0.1"]
    assert read_journal([journal.path], "another") is None
    (tmp_path / "journal.json").write_text("{not json")
    assert journal.read() is None


def test_iptables_cut_is_journalled_before_it_is_applied(world: World) -> None:
    world.request(op="cut", backend="iptables", targets=[{"id": CID, "pid": 4242}])
    (what, journal), *_ = world.events
    assert what == f"add DCFIRE-{SESSION}"
    assert journal["cuts"][CID]["method"] == "iptables"
    restored = world.request(op="uncut")["result"]["restored"]
    assert list(restored) == [CID]
    assert world.events[-1][0] == f"remove DCFIRE-{SESSION}"
    assert world.journal()["cuts"] == {}


def test_freeze_is_journalled_before_and_thaw_after(world: World) -> None:
    world.agent.pools.pools["p1"] = {
        "image": None,
        "tag": f"dcfire:{SESSION}:p1",
        "loop": None,
        "frozen": False,
        "volume": "v",
    }
    world.request(op="freeze", names=["p1"])
    assert world.events[-1] == ("freeze p1", world.journal())
    assert world.journal()["pools"]["p1"]["frozen"] is True
    world.request(op="thaw", names=["p1"])
    what, during = world.events[-1]
    assert what == "thaw p1"
    assert during["pools"]["p1"]["frozen"] is True  # still frozen until FITHAW returned
    assert world.journal()["pools"]["p1"]["frozen"] is False


def test_undo_all_removes_cuts_then_peer_cuts_then_thaws(world: World) -> None:
    world.request(op="cut", backend="iptables", targets=[{"id": CID, "pid": 4242}])
    peer = [{"id": CID, "pid": 4242, "side": 0}, {"id": OTHER, "pid": 4243, "side": 1}]
    world.request(op="peer_cut", name="p1", backend="iptables", targets=peer)
    world.agent.pools.pools["pool"] = {
        "image": None,
        "tag": "t",
        "loop": None,
        "frozen": False,
        "volume": "v",
    }
    world.request(op="freeze", names=["pool"])
    world.events.clear()
    world.agent.undone = False
    world.agent.undo_all()
    order = [what for what, _ in world.events]
    assert order == [
        f"remove DCFIRE-{SESSION}",
        f"remove DCFPp1-{SESSION}",
        f"remove DCFPp1-{SESSION}",
        "thaw pool",
    ]
    # Each step starts from the journal the previous one left.
    assert world.events[1][1]["cuts"] == {}
    assert world.events[3][1]["peers"] == {}
    final = world.journal()
    assert (final["cuts"], final["peers"], final["pools"]["pool"]["frozen"]) == ({}, {}, False)


def test_a_new_agent_replays_the_journal_and_drops_what_is_gone(tmp_path: Path) -> None:
    state = tmp_path / SESSION
    state.mkdir()
    gone: CutEntry = {"pid": 999_999_999, "netns": 1, "method": "iptables"}
    peer: CutEntry = {"pid": 999_999_999, "netns": 1, "method": "nftables", "block": []}
    pool: PoolEntry = {
        "image": "/nowhere.img",
        "tag": "t",
        "loop": 99999,
        "frozen": True,
        "volume": "v",
    }
    Journal(str(state), SESSION).write({"p1": pool}, {CID: gone}, {"p1": {OTHER: peer}})
    out = io.StringIO()
    agent = Agent(SESSION, out, root=str(tmp_path))
    agent.undone = True
    assert agent.adopted["cuts"] == [] and agent.adopted.get("peers") == []
    assert agent.adopted["pools"] == []
    assert [line.split(":")[0] for line in agent.adopted["lost"]] == ["p1"]
    replayed = json.loads((state / "journal.json").read_text())
    assert (replayed["pools"], replayed["cuts"], replayed["peers"]) == ({}, {}, {})


def test_no_journal_adopts_nothing(tmp_path: Path) -> None:
    agent = Agent(SESSION, io.StringIO(), root=str(tmp_path))
    agent.undone = True
    assert agent.adopted == {"pools": [], "lost": [], "cuts": []}


def _pool(world: World, name: str, **extra: Any) -> None:
    entry: PoolEntry = {
        "image": None,
        "tag": f"dcfire:{SESSION}:{name}",
        "loop": None,
        "frozen": False,
        "volume": "v",
    }
    entry.update(extra)  # type: ignore[typeddict-item]
    world.agent.pools.pools[name] = entry


def test_shutdown_is_journalled_before_and_remount_after(world: World) -> None:
    """A power loss's shut-down pool is in the journal before the ioctl, so a killed
    session's dead-man switch mounts it again; the flag goes only once it is mounted."""
    _pool(world, "p1")

    def shutdown(name: str) -> float:
        world.events.append((f"shutdown {name}", world.journal()))
        return 1.0

    def remount(name: str, pool: PoolEntry) -> float:
        world.events.append((f"remount {name}", world.journal()))
        return 2.0

    world.agent.pools.shutdown_one = shutdown  # type: ignore[method-assign]
    world.agent.pools.remount_one = remount  # type: ignore[method-assign]
    assert world.request(op="pool_shutdown", names=["p1"])["result"]["shut"] == {"p1": 1.0}
    what, before = world.events[-1]
    assert (what, before["pools"]["p1"]["shutdown"]) == ("shutdown p1", True)
    world.request(op="thaw", names=["p1"])  # a shut-down pool is not thawed: it answers EIO
    assert world.events[-1][0] == "shutdown p1"
    assert world.request(op="pool_remount", names=["p1"])["result"]["remounted"] == {"p1": 2.0}
    what, during = world.events[-1]
    assert (what, during["pools"]["p1"]["shutdown"]) == ("remount p1", True)
    assert world.journal()["pools"]["p1"]["shutdown"] is False


def test_shutdown_of_another_sessions_pool_is_refused(world: World) -> None:
    _pool(world, "theirs", attached="s0owner")
    world.out.seek(0)
    world.agent.handle({"id": 1, "op": "pool_shutdown", "names": ["theirs"]})
    answer = json.loads(world.out.getvalue())
    assert answer["ok"] is False and answer["kind"] == "refused"
    assert "belongs to session s0owner" in answer["error"]
    assert not world.agent.pools.pools["theirs"].get("shutdown")


def test_is_shut_down_reads_the_superblock_options(tmp_path: Path) -> None:
    from pytest_dcfire.faults.agent.pools import is_shut_down

    info = tmp_path / "mountinfo"
    info.write_text(
        "48 27 7:0 / /dcfire/mnt/a rw,relatime - ext4 /dev/loop0 rw,shutdown\n"
        "49 27 7:1 / /dcfire/mnt/b rw,relatime - ext4 /dev/loop1 rw\n"
        "50 27 7:0 / /dcfire/mnt/c rw,relatime - ext4 /dev/loop0 rw,shutdown\n"
        "51 27 7:0 / /dcfire/mnt/c rw,relatime - ext4 /dev/loop0 rw\n"
    )
    assert is_shut_down("/dcfire/mnt/a", str(info))
    assert not is_shut_down("/dcfire/mnt/b", str(info))
    assert not is_shut_down("/dcfire/mnt/c", str(info))  # mounted again on top: alive
    assert not is_shut_down("/dcfire/mnt/none", str(info))
