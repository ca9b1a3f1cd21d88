"""README's main job, run as a user runs it: `python3 -m pytest examples/demo`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def test_demo_chaos_suite_passes() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/demo", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "5 passed" in run.stdout
    assert "dcfire: fires" in run.stdout
