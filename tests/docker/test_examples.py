"""README's examples, run as a user runs them: `python3 -m pytest examples/<name>`.

Each run is a separate pytest process against the example's folder (its own pytest.ini and
topology), and its outcome counts are compared exactly: an expected failure (a documented
hazard, `xfail(strict=True)`) that starts passing fails this test, as does any new failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]

OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|xfailed|xpassed|skipped)")


def run_pytest(*args: str, timeout: float = 840) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-rxXfE"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outcomes(stdout: str) -> dict[str, int]:
    """The counts of pytest's last summary line: {"passed": 4, "xfailed": 1}."""
    lines = [line for line in stdout.splitlines() if line.startswith("=") and " in " in line]
    assert lines, "no summary line in:\n" + stdout[-3000:]
    found = {kind: int(n) for n, kind in OUTCOME.findall(lines[-1])}
    if "error" in found:
        found["errors"] = found.pop("error")
    return found


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["examples/demo"], {"passed": 5}, id="demo"),
        pytest.param(["examples/messenger"], {"passed": 4, "xfailed": 1}, id="messenger"),
        pytest.param(
            ["examples/messenger", "--dcfire-topology", "examples/messenger/topology-fixed.yml"],
            {"passed": 5},
            id="messenger-fixed",
        ),
        pytest.param(
            ["examples/postgres-failover"], {"passed": 4, "xfailed": 4}, id="postgres-failover"
        ),
        pytest.param(["examples/redis-sentinel"], {"passed": 2}, id="redis-sentinel"),
        pytest.param(["examples/redis-aof"], {"passed": 1, "xfailed": 1}, id="redis-aof"),
        pytest.param(["examples/etcd"], {"passed": 3, "xfailed": 1}, id="etcd"),
    ],
)
def test_example_chaos_suite(args: list[str], expected: dict[str, int]) -> None:
    run = run_pytest(*args)
    assert outcomes(run.stdout) == expected, run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "dcfire: fires" in run.stdout


def test_messenger_plan_names_auth_as_single_homed() -> None:
    """The plan predicts what the messenger's xfail shows, and that the fix removes it."""
    plan = run_pytest("examples/messenger", "--dcfire-plan", timeout=60)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "stranded elsewhere: api@ansan (needs auth: every instance is in pangyo)" in plan.stdout
    assert "single-homed dependencies: auth (only in pangyo; needed by api@ansan)" in plan.stdout
    fixed = run_pytest(
        "examples/messenger",
        "--dcfire-plan",
        "--dcfire-topology",
        "examples/messenger/topology-fixed.yml",
        timeout=60,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "no single-homed dependencies" in fixed.stdout
