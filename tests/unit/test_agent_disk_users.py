"""The agent's record of who runs on a failed disk: shapes checked before anything is
journalled, and a stale or foreign entry never signalled."""

from __future__ import annotations

import os

import pytest

from pytest_dcfire.faults.agent.dispatch import Refused
from pytest_dcfire.faults.agent.pools import stop_users, wire_users

CID = "a" * 64


def test_users_are_journalled_as_ids_and_pids() -> None:
    assert wire_users(None) == []
    assert wire_users([{"id": CID, "pid": 4242, "extra": 1}]) == [{"id": CID, "pid": 4242}]


@pytest.mark.parametrize(
    "raw",
    [
        "everyone",
        [{"id": "short", "pid": 4242}],
        [{"id": CID, "pid": 1}],
        [{"id": CID, "pid": "4242"}],
        ["x"],
    ],
)
def test_bad_users_are_refused(raw: object) -> None:
    with pytest.raises(Refused):
        wire_users(raw)


def test_a_pid_that_is_not_that_container_is_never_signalled() -> None:
    # The test runner's parent: alive, but its cgroup names no such container.
    assert stop_users([{"id": CID, "pid": os.getppid()}]) is False
    assert stop_users([{"id": CID, "pid": 2**22 + 7}]) is False  # no such process
