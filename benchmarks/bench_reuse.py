"""A first run against a second run with --dcfire-reuse: wall time and time to the first test.

    python benchmarks/bench_reuse.py [--repeat 3] [--services 30]

For each system (the demo example, and N independent python3 HTTP servers in one site) the
benchmark copies it into a temporary directory, removes any kept system of its own with
`pytest --dcfire-clean` (its runs are a user of their own, `LOGNAME`, so that other kept
systems on the engine are left alone), then runs pytest there twice with `--dcfire-reuse`:
the first run starts the system and keeps it, the second takes it over. Each run is a real pytest
subprocess; "to first test" is from its start to the first test's call (a conftest hook
writes the time), "set-up" is the time the `dcfire_topology` fixture took to set up (the
system started, or taken over). Median of --repeat pairs; images are built before the first
pair.
The kept system is removed at the end. Nothing is asserted; the aim is a second run whose
set-up is at most a tenth of the first's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table import print_table

ROOT = Path(__file__).resolve().parent.parent
#: Reusable systems belong to a user, and `--dcfire-clean` removes all of that user's: the
#: benchmark's runs are a user of their own, so that its cleaning never touches the kept
#: systems of anything else running on this engine.
BENCH_USER = dict.fromkeys(("LOGNAME", "USER"), f"dcfire-bench-{os.getpid()}")
FIRST_TEST = """
import os, time
import pytest

def pytest_runtest_call(item):
    path = os.environ["DCFIRE_BENCH_FIRST"]
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(repr(time.time()))

@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    started = time.monotonic()
    try:
        return (yield)
    finally:
        if fixturedef.argname == "dcfire_topology":
            with open(os.environ["DCFIRE_BENCH_FIRST"] + ".setup", "w") as f:
                f.write(repr(time.monotonic() - started))
"""


def many(n: int) -> str:
    service = (
        "  s{i}:\n    site: a\n    image: debian:bookworm-slim\n"
        '    command: ["python3", "-m", "http.server", "8080"]\n'
        "    ports: [8080]\n    healthcheck: {{tcp: 8080}}\n"
    )
    return "sites: [a]\nservices:\n" + "".join(service.format(i=i) for i in range(n))


def prepare_many(where: Path, n: int) -> Path:
    where.mkdir(parents=True)
    (where / "topology.yml").write_text(many(n))
    (where / "pytest.ini").write_text("[pytest]\ndcfire_topology = topology.yml\n")
    (where / "test_many.py").write_text(
        "def test_up(dcfire_topology):\n    assert len(dcfire_topology.services) > 0\n"
    )
    return where


def prepare_demo(where: Path) -> Path:
    shutil.copytree(ROOT / "examples" / "demo", where)
    return where


def pytest_run(where: Path, *args: str) -> tuple[float, float, float, str]:
    """(wall seconds, seconds to the first test's call, seconds of the `dcfire_topology`
    fixture's set-up, output) of one pytest subprocess."""
    (where / "conftest.py").write_text(FIRST_TEST)
    mark = where / ".first-test"
    setup = where / ".first-test.setup"
    mark.unlink(missing_ok=True)
    setup.unlink(missing_ok=True)
    env = {**os.environ, "DCFIRE_BENCH_FIRST": str(mark), **BENCH_USER}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    first = float(mark.read_text()) - started if mark.exists() else float("nan")
    fixture = float(setup.read_text()) if setup.exists() else float("nan")
    if proc.returncode not in (0, 5):
        print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"pytest failed in {where} ({proc.returncode})")
    return wall, first, fixture, proc.stdout


def measure(name: str, where: Path, repeat: int) -> list[object]:
    pytest_run(where, "--dcfire-clean")
    pytest_run(where)  # build the images once: builds are paid once, not by every run
    firsts: list[tuple[float, float, float]] = []
    seconds: list[tuple[float, float, float]] = []
    for _ in range(repeat):
        pytest_run(where, "--dcfire-clean")
        firsts.append(pytest_run(where, "--dcfire-reuse")[:3])
        *numbers, out = pytest_run(where, "--dcfire-reuse", "-s")
        if "reusing the system" not in out:
            raise SystemExit(f"the second run did not reuse the system:\n{out[-3000:]}")
        seconds.append((numbers[0], numbers[1], numbers[2]))
    pytest_run(where, "--dcfire-clean")
    first = [statistics.median(run[i] for run in firsts) for i in range(3)]
    second = [statistics.median(run[i] for run in seconds) for i in range(3)]
    return [
        name,
        *(f"{first[i]:.1f}" for i in range(3)),
        *(f"{second[i]:.1f}" for i in range(3)),
        f"{second[2] / first[2]:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--services", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dcfire-bench-reuse-") as tmp:
        rows.append(measure("demo example", prepare_demo(Path(tmp) / "demo"), args.repeat))
        many_dir = prepare_many(Path(tmp) / "many", args.services)
        rows.append(measure(f"{args.services} services", many_dir, args.repeat))
    print_table(
        f"first run vs second run with --dcfire-reuse (s, median of {args.repeat}; set-up = "
        "the dcfire_topology fixture's set-up)",
        [
            "system",
            "1st: wall",
            "1st: to 1st test",
            "1st: set-up",
            "2nd: wall",
            "2nd: to 1st test",
            "2nd: set-up",
            "2nd/1st set-up",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
