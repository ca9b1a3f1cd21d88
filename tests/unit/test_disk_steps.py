"""How a disk fault's step is built from the storage pools and the power switch, against
fakes that record each call: which pools each kind touches, the order a failed disk comes
back in (kill, exited, remount, start), adopted containers skipped, and two kinds on one
pool refused. The real pools are exercised in tests/docker/test_disk_faults.py."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dcfire.diskfaults import DiskSpec
from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.backend import FaultBackend
from pytest_dcfire.faults.storage import Pool
from pytest_dcfire.faults.timing import FaultTiming


@dataclass
class Handle:
    name: str
    adopted: bool = False
    site: str = "west"
    spec: Any = None

    @property
    def container(self) -> str:
        return f"id-{self.name}"  # container_id() takes an id as it is


class Recorder:
    def __init__(self, log: list[tuple[str, tuple[str, ...]]]) -> None:
        self.log = log

    def record(self, what: str, items: Sequence[Any]) -> FaultTiming:
        names = tuple(sorted(getattr(i, "name", i) for i in items))
        self.log.append((what, names))
        return FaultTiming("storage", what, 1.0, {})


class FakePools(Recorder):
    def __init__(self, log: list[tuple[str, tuple[str, ...]]], pools: dict[str, Pool]) -> None:
        super().__init__(log)
        self.by_container = pools

    def pools(self, sites: Sequence[str] | None = None) -> list[Pool]:
        return [p for p in self.by_container.values() if sites is None or p.site in sites]

    def for_containers(self, containers: Sequence[Any]) -> list[Pool]:
        return [self.by_container[c] for c in containers if c in self.by_container]

    def refuse_shared(self, pools: Sequence[Pool], what: str) -> None:
        pass

    def shutdown(self, chosen: Sequence[Pool], users: dict[str, Any]) -> FaultTiming:
        self.users = users
        return self.record("shutdown", chosen)

    def __getattr__(self, name: str) -> Any:
        if name in ("freeze", "thaw", "remount", "fill", "unfill"):
            return lambda chosen: self.record(name, chosen)
        raise AttributeError(name)


class FakeTargets:
    def resolve(self, containers: Sequence[str]) -> list[Any]:
        return [SimpleNamespace(id=c, pid=100 + len(c)) for c in containers]


class FakePower(Recorder):
    def power_off(self, containers: Sequence[Any]) -> FaultTiming:
        return self.record("kill", containers)

    def wait_exited(self, containers: Sequence[Any]) -> None:
        self.record("exited", containers)

    def power_on(self, containers: Sequence[Any]) -> FaultTiming:
        return self.record("start", containers)

    def rejoin(self, containers: Sequence[Any]) -> None:
        self.record("rejoin", containers)


def backend() -> tuple[FaultBackend, list[tuple[str, tuple[str, ...]]]]:
    log: list[tuple[str, tuple[str, ...]]] = []
    pools = {
        f"id-{n}": Pool(f"pool-{n}", f"vol-{n}", "east", 16, f"/dev/loop{i}")
        for i, n in enumerate(("db", "api"))
    }
    b = object.__new__(FaultBackend)
    b.pools = FakePools(log, pools)  # type: ignore[assignment]
    b.power = b.peers = FakePower(log)  # type: ignore[assignment]
    b._held = Counter()
    b._lock = threading.Lock()
    b._pool_kinds = {}
    b.refused = None
    b.targets = FakeTargets()  # type: ignore[assignment]
    return b, log


def test_fail_shuts_the_pool_and_the_lift_restarts_its_users() -> None:
    b, log = backend()
    step = b.make_step("disk", DiskSpec("db", "fail"), [Handle("db")])
    assert step.apply().method == "shutdown"
    assert log == [("shutdown", ("pool-db",))]
    # The agent journals who runs on the failed pool (the dead-man switch stops them).
    assert b.pools.users == {"pool-db": [{"id": "id-db", "pid": 105}]}  # type: ignore[union-attr]
    log.clear()
    step.undo()
    assert log == [
        ("kill", ("id-db",)),
        ("exited", ("id-db",)),
        ("remount", ("pool-db",)),
        ("start", ("id-db",)),
        ("rejoin", ("id-db",)),
    ]


def test_a_fire_that_keeps_the_power_off_is_not_started_by_the_lift() -> None:
    b, log = backend()
    b._held[("kill", "id-db")] = 1  # a crash holds it killed: its own undo starts it
    step = b.make_step("disk", DiskSpec("db", "fail"), [Handle("db")])
    step.apply()
    log.clear()
    step.undo()
    assert log == [("exited", ("id-db",)), ("remount", ("pool-db",))]


def test_full_fills_and_empties_only_the_targets_pools() -> None:
    b, log = backend()
    step = b.make_step("disk", DiskSpec("api", "full"), [Handle("api")])
    step.apply()
    step.undo()
    assert log == [("fill", ("pool-api",)), ("unfill", ("pool-api",))]


def test_adopted_containers_keep_their_storage() -> None:
    b, log = backend()
    handles = [Handle("db"), Handle("theirs", adopted=True)]
    timing = b.make_step("disk", DiskSpec("east", "full"), handles).apply()
    assert timing.method == "fill; adopted: not ours, skipped"
    assert log == [("fill", ("pool-db",))]
    only_theirs = b.make_step("disk", DiskSpec("x", "fail"), [Handle("x", adopted=True)])
    assert only_theirs.apply().method == "not ours, skipped"


def test_two_kinds_on_one_pool_are_refused_and_the_first_still_lifts() -> None:
    b, log = backend()
    full = b.make_step("disk", DiskSpec("db", "full"), [Handle("db")])
    full.apply()
    fail = b.make_step("disk", DiskSpec("east", "fail"), [Handle("db"), Handle("api")])
    with pytest.raises(FireError, match="pool pool-db already has a 'full' fault; lift it"):
        fail.apply()
    fail.undo()  # what the controller does after a failed apply: must not count it
    assert ("remount", ("pool-db",)) not in log
    full.undo()
    assert log[-1] == ("unfill", ("pool-db",))
    assert not b._held and not b._pool_kinds
