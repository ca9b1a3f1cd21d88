"""What `--dcfire-burn SITE` costs an unedited suite, with and without pytest-xdist.

    python benchmarks/bench_burn.py [--repeat 1] [--seconds 0.5]

A compose project (an echo server in `east`, one in `west`, labelled `dcfire.site`) is started
once with docker-compose; the inner suite (a real pytest subprocess, as a user's run) has 7
plain tests that never mention the plugin: each sleeps --seconds and then talks to the site
that is not burning. It runs with `-n 0`, `-n 2` (`dcfire_share = worker`) and `-n 2`
(`dcfire_share = session`), adopting the project (`dcfire_adopt_compose`), once without the
plugin (`-p no:dcfire`: the baseline) and once under a burn of each site. Per run it prints
the wall time and the plugin's own share of it (wall time minus the baseline of the same
mode), the part of it spent in tests' set-ups and teardowns (`--durations`: where the system
starts and a worker burns; the rest is start-up, configure and session end, where the xdist
controller burns and restores), and the burn's cut, restore and health wait from the fire
table. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "docker"))
from bench_table import print_table
from inner_session import ECHO

TESTS = 7

SUITE = """
import os, socket, time

import docker

PROJECT = os.environ["BENCH_PROJECT"]
ALIVE = os.environ["BENCH_ALIVE"]


def alive_ip():
    flt = {"label": [f"com.docker.compose.project={PROJECT}", f"dcfire.site={ALIVE}"]}
    [c] = docker.from_env().containers.list(filters=flt)
    return list(c.attrs["NetworkSettings"]["Networks"].values())[0]["IPAddress"]

"""


def suite(seconds: float) -> str:
    body = SUITE
    for n in range(TESTS):
        body += (
            f"\ndef test_plain_{n}():\n"
            f"    time.sleep({seconds})\n"
            "    with socket.create_connection((alive_ip(), 7000), timeout=5) as s:\n"
            "        s.sendall(b'ping')\n"
            "        assert s.recv(10) == b'ping'\n"
        )
    return body


def compose_doc() -> str:
    def service(site: str) -> dict[str, Any]:
        return {
            "image": "debian:bookworm-slim",
            "command": ["python3", "-c", ECHO],
            "init": True,
            "labels": {"dcfire.site": site, "dcfire.healthcheck": "tcp:7000"},
        }

    return json.dumps({"version": "2.4", "services": {s: service(s) for s in ("east", "west")}})


MODES = {
    "-n 0": ["-p", "no:xdist"],
    "-n 2, per worker": ["-n", "2", "-o", "dcfire_share=worker"],
    "-n 2, shared": ["-n", "2", "-o", "dcfire_share=session"],
}
#: `--durations` lines of set-ups and teardowns (where the system starts, the burn ignites).
SETUP = re.compile(r"^([\d.]+)s (?:setup|teardown) ", re.MULTILINE)
FIRE_ROW = re.compile(
    r"\(whole session: --dcfire-burn\)\s+\S+ \[\w+\]\s+\d+\s+(\d+)\s+[\d.]+\s+(\d+)\s+(\d+)"
)


def run(path: Path, project: str, mode: str, burn: str | None, seconds: float) -> dict[str, Any]:
    import pytest_dcfire

    root = str(Path(pytest_dcfire.__file__).resolve().parent.parent)
    alive = "west" if burn == "east" else "east"
    env = {**os.environ, "PYTHONPATH": root, "BENCH_PROJECT": project, "BENCH_ALIVE": alive}
    args = [*MODES[mode], *(["--dcfire-burn", burn] if burn else ["-p", "no:dcfire"])]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    command += ["--durations=0", "--durations-min=0"]
    started = time.monotonic()
    proc = subprocess.run(
        command, cwd=path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode} burn={burn}: the inner run failed:\n{proc.stdout}\n{proc.stderr}")
    rows = FIRE_ROW.findall(proc.stdout)
    fixtures = sum(float(s) for s in SETUP.findall(proc.stdout))
    return {"wall": wall, "fires": len(rows), "row": rows[0] if rows else None, "fix": fixtures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    project = f"dcfirebench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-burn-") as tmp:
        path = Path(tmp)
        (path / "docker-compose.yml").write_text(compose_doc())
        (path / "pytest.ini").write_text(
            f"[pytest]\ndcfire_adopt_compose = {project}\ndcfire_recovery_timeout = 30\n"
        )
        (path / "test_plain.py").write_text(suite(args.seconds))
        base = ["docker-compose", "-p", project, "-f", str(path / "docker-compose.yml")]
        subprocess.run([*base, "up", "-d"], check=True, capture_output=True, timeout=300)
        try:
            results: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
            for _ in range(args.repeat):
                for mode in MODES:
                    for burn in (None, "east", "west"):
                        results.setdefault((mode, burn), []).append(
                            run(path, project, mode, burn, args.seconds)
                        )
        finally:
            subprocess.run([*base, "down", "-t", "2"], capture_output=True, timeout=300)
    rows = []
    for (mode, burn), runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        baseline = statistics.median(r["wall"] for r in results[(mode, None)])
        fix = statistics.median(r["fix"] for r in runs)
        fix0 = statistics.median(r["fix"] for r in results[(mode, None)])
        row = runs[-1]["row"]
        rows.append(
            [
                mode,
                burn or "none (-p no:dcfire)",
                f"{wall:.2f}",
                "-" if burn is None else f"{wall - baseline:+.2f}",
                "-" if burn is None else f"{100 * (wall - baseline) / wall:.0f}%",
                "-" if burn is None else f"{fix - fix0:+.2f}",
                str(runs[-1]["fires"]) if burn else "-",
                "-" if row is None else " / ".join(row),
            ]
        )
    print_table(
        f"{TESTS} plain tests (each {args.seconds:g} s, then an echo to the live site) against "
        f"an adopted compose project of 2 sites; median of {args.repeat} run(s)",
        [
            "mode",
            "burn",
            "wall s",
            "plugin s",
            "plugin share",
            "in set-up/teardown s",
            "burn rows",
            "cut / restore / healthy ms",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
