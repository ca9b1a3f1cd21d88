"""Processes by pid, as /proc shows them: who a pid is (its start time, so that a recycled
pid is never taken for the process that had it) and which pids run a program. Standard
library only: the agent and the plugin (which labels resources with its pid) share it."""

from __future__ import annotations

import os


def start_token(pid: int, proc: str = "/proc") -> str:
    """The kernel's start time of `pid` (field 22 of its stat), "" when it is gone."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    # Field 22 comes after the parenthesised command, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def pids_named(comm: str, proc: str = "/proc") -> list[int]:
    """The pids whose command name is `comm`."""
    pids: list[int] = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                with open(f"{proc}/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids
