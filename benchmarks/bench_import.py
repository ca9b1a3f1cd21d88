"""What the plugin costs every pytest run that has it installed: the import of its entry point.

    python benchmarks/bench_import.py [--repeat 9]

pytest loads `pytest_dcfire.plugin` (its pytest11 entry point) in every run, burning or not.
Each of --repeat fresh interpreters runs `python -X importtime -c "import pytest,
pytest_dcfire.plugin"`; the plugin's cost is the cumulative import time of the top-level
`pytest_dcfire*` entries (what pytest had already loaded is not counted again), shown apart
from pytest's own. The wall time of whole processes (`import pytest` alone, then with the
plugin) is shown beside it, and the heavy packages the import pulled in. Bytecode is cached
(in a temporary directory) as in an installed plugin, unless --no-bytecode. Target: under 20 ms.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table import print_table

HEAVY = ("docker", "tenacity", "toxiproxy", "yaml", "paramiko", "requests")
LOADED = (
    "import sys, pytest, pytest_dcfire.plugin;"
    "print(len([m for m in sys.modules if m.startswith('pytest_dcfire')]));"
    f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
)


def environment(cache: str | None) -> dict[str, str]:
    """This checkout first on the path, so the numbers are of the code beside the benchmark;
    bytecode cached in `cache` (as a user's installed plugin has it), or never with None."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def importtime(env: dict[str, str]) -> tuple[float, float]:
    """(pytest's, the plugin's) cumulative import time in ms, from one fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest, pytest_dcfire.plugin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    pytest_us = plugin_us = 0
    for line in out.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        name = name[1:]
        if name.startswith(" "):  # nested: counted in its top-level parent
            continue
        if name == "pytest":
            pytest_us += int(cumulative)
        elif name.startswith("pytest_dcfire"):
            plugin_us += int(cumulative)
    return pytest_us / 1000, plugin_us / 1000


def wall(code: str, env: dict[str, str]) -> float:
    """Wall time in ms of a fresh interpreter running `code`."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module on each run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcfire-pycache-") as cache:
        measure(args.repeat, environment(None if args.no_bytecode else cache))


def measure(repeat: int, env: dict[str, str]) -> None:
    """Print the table: importtime split, whole-process wall times, what was loaded."""
    wall("import pytest, pytest_dcfire.plugin", env)  # warm the bytecode caches
    times = [importtime(env) for _ in range(repeat)]
    bare, full = [], []
    for _ in range(repeat):  # in turn, so that the machine's drift hits both alike
        bare.append(wall("import pytest", env))
        full.append(wall("import pytest, pytest_dcfire.plugin", env))
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    med = statistics.median
    paired = [f - b for f, b in zip(full, bare, strict=True)]
    rows = [
        ("importtime: pytest", f"{med(t[0] for t in times):.1f}"),
        ("importtime: pytest_dcfire.plugin", f"{med(t[1] for t in times):.1f}"),
        ("importtime: plugin / pytest", f"{med(t[1] / t[0] for t in times):.2f}"),
        ("wall: python -c 'import pytest'", f"{med(bare):.1f}"),
        ("wall: ... + pytest_dcfire.plugin", f"{med(full):.1f}"),
        ("wall: difference (median of pairs)", f"{med(paired):.1f}"),
    ]
    print_table(f"Import cost, ms (median of {repeat})", ("what", "ms"), rows)
    print(f"\npytest_dcfire modules loaded: {loaded[0]}")
    print(f"heavy packages loaded: {(loaded[1:] or [''])[0] or 'none'}")


if __name__ == "__main__":
    main()
