"""How long a SIGKILLed session's leftovers live: from the SIGKILL of a pytest run in the
middle of a fire to its faults undone and to every container, volume, network and loop
device of its session gone, with no other session started meanwhile.

    python benchmarks/bench_reaper.py [--runs 3] [--modes fire,power-loss]

Each run is a real pytest session (a subprocess, as a user's run) on the two-site echo
topology of the docker tests (data on the site's pool), whose test burns `east` (nftables
cut + pool freeze for `fire`; SIGKILL + ext4 shutdown for `power-loss`) and sleeps; this
script SIGKILLs it and polls the engine and the host every 50 ms. Columns, in seconds,
median of --runs (each run's values are printed too):

- undone: the cut gone from east's netns (`fire` only: a power loss's containers are off);
- containers / volumes / networks / loop devices: the last of its kind gone;
- all gone: everything of the session gone.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "docker"))
from bench_table import print_table
from dcfire_inner import leftovers, nft_tables, service_containers, start_inner

BURN = """
import os, pathlib, time

def test_burn(dcfire, dcfire_topology):
    dcfire.fire("east", mode={mode!r})
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    time.sleep(120)
"""

KINDS = ("containers", "volumes", "networks", "loop devices")
TIMEOUT_S = 120.0


def one_run(client: docker.DockerClient, root: Path, mode: str) -> dict[str, float]:
    inner = start_inner(root, BURN.format(mode=mode))
    session = inner.wait_mark()
    east = next(
        c
        for c in service_containers(client, session)
        if c.labels.get("io.github.pytest-dcfire.site") == "east"
    )
    east.reload()
    pid = int(east.attrs["State"]["Pid"] or 0)
    killed = time.monotonic()
    inner.signal(signal.SIGKILL)
    inner.wait()
    seen: dict[str, float] = {}
    while time.monotonic() - killed < TIMEOUT_S:
        now = time.monotonic() - killed
        if "undone" not in seen and (pid == 0 or f"dcfire_{session}" not in nft_tables(pid)):
            seen["undone"] = now
        left = leftovers(client, session)
        for kind in KINDS:
            if not left[kind]:
                seen.setdefault(kind, now)
        if not any(left.values()):
            seen["all gone"] = now
            break
        time.sleep(0.05)
    if mode != "fire":
        seen.pop("undone", None)
    return seen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="fire,power-loss")
    args = parser.parse_args(argv)
    client = docker.from_env()
    columns = ("undone", *KINDS, "all gone")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dcfire-bench-reaper-") as tmp:
        for mode in args.modes.split(","):
            runs = []
            for number in range(args.runs):
                seen = one_run(client, Path(tmp) / f"{mode}-{number}", mode)
                times = ", ".join(f"{k} {v:.1f} s" for k, v in seen.items())
                print(f"{mode} run {number + 1}: {times}", flush=True)
                runs.append(seen)
            cells = []
            for column in columns:
                values = [r[column] for r in runs if column in r]
                if len(values) < len(runs):
                    cells.append("-" if not values else f"{len(runs) - len(values)} never")
                else:
                    cells.append(f"{statistics.median(values):.1f}")
            rows.append([mode, *cells])
    print_table(
        f"SIGKILL mid-fire → gone, seconds (median of {args.runs}; no other session started)",
        ["mode", *columns],
        rows,
        numbers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
