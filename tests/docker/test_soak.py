"""Soak: 100 fire/restore cycles in one real pytest session, and nothing grows.

The numbers come from `benchmarks/bench_soak.py` (the same run, printed as its table): open
file descriptors, threads and RSS of the pytest process, nftables rules in the burning
containers' netns, loop devices of the session, cycle time. Only generous no-growth bounds
are asserted; the cycle time at the end against the start is printed as a measurement.
"""

from __future__ import annotations

import sys
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_soak

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CYCLES = 100


def test_100_fire_restore_cycles_leak_nothing(tmp_path: Path) -> None:
    result = bench_soak.run(tmp_path, CYCLES, timeout=240)
    assert result["returncode"] == 0, result["output"]
    rows = result["rows"]
    assert [r["cycle"] for r in rows] == list(range(1, CYCLES + 1))
    print(f"\nsoak: {CYCLES} fire/restore cycles, session {result['session']}")
    for line in bench_soak.table(rows):
        print(line)

    first, last = rows[0], rows[-1]
    # The cut was real (rules appear while burning) and was undone every time.
    burning = [r["nft_burning"] for r in rows if r["nft_burning"] is not None]
    assert burning and all(b > first["nft_after"] for b in burning)
    assert {r["nft_after"] for r in rows} == {first["nft_after"]}
    assert {r["loops"] for r in rows} == {2}  # one pool per instance, never re-made
    assert last["fds"] <= first["fds"] + 5
    assert last["threads"] <= first["threads"] + 2
    assert last["rss_kb"] - first["rss_kb"] < 32 * 1024
    # Generous: the measured ratio is printed above; only a runaway is a failure.
    assert bench_soak.window(rows, first=False) < 3 * bench_soak.window(rows, first=True)

    client = docker.from_env()
    try:
        assert_clean(client, result["session"], result["output"])
    finally:
        client.close()
