"""Processes by pid, as /proc shows them: who a pid is (its start time, so that a recycled
pid is never taken for the process that had it) and which pids run a program. Standard
library only: the agent and the plugin (which labels resources with its pid) share it."""

from __future__ import annotations

import os


def _stat(pid: int, proc: str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command (the state first), [] when gone."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return []
    # The command is parenthesised and may contain spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()


def start_token(pid: int, proc: str = "/proc") -> str:
    """The kernel's start time of `pid` (field 22 of its stat), "" when it is gone."""
    fields = _stat(pid, proc)
    return fields[19] if len(fields) > 19 else ""


def running(pid: int, start: str, proc: str = "/proc") -> bool:
    """`pid` is still the process that started at `start`, and not a zombie: a SIGKILLed
    process whose parent has not waited for it yet (an xdist worker) is dead."""
    fields = _stat(pid, proc)
    return len(fields) > 19 and fields[19] == start and fields[0] not in ("Z", "X", "x")


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
