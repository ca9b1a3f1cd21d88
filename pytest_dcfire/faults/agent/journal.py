"""The session's journal: every pool, which are frozen, every cut and peer cut, on the
session's state volume (/dcfire/<session>/journal.json), replaced atomically.

Every fault is journalled before it is applied (or, for an owned nftables table that the
kernel removes with its agent, right after), so a restarted agent (new helper container,
same volume) adopts it and restore never depends on memory alone; the reaper reads a dead
session's journal to undo what outlived its agent (iptables cuts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .protocol import PROTOCOL, CutEntry, PoolEntry

JOURNAL = "journal.json"


class Journal:
    def __init__(self, state: str, session: str) -> None:
        self.path = f"{state}/{JOURNAL}"
        self.session = session

    def write(
        self,
        pools: Mapping[str, PoolEntry],
        cuts: Mapping[str, CutEntry],
        peers: Mapping[str, Mapping[str, CutEntry]],
    ) -> None:
        data = {
            "protocol": PROTOCOL,
            "session": self.session,
            "pools": dict(pools),
            "cuts": dict(cuts),
            "peers": {name: dict(entries) for name, entries in peers.items()},
        }
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any] | None:
        """What a previous agent of this session left, or None (no journal, or garbage)."""
        return read_journal([self.path])


def read_journal(paths: Iterable[str], session: str | None = None) -> dict[str, Any] | None:
    """The first readable journal of `paths` (of `session`, when given)."""
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if session is not None and data.get("session") != session:
            continue
        return data
    return None
