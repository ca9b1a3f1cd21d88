"""examples/ci/run-locally: the GitHub workflow's steps, run end to end against the example
compose stack (images, then per matrix entry: load, up --wait, the suite with no fire / east
dark / west dark, teardown, artifacts), in a copy of the repository's files.

The stack's api in west needs east's store, so the east job fails on purpose (four tests get
503 from api-west); baseline and west pass. Every job's JUnit file and fire report are
published, and no container of any job's compose project is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CACHE_TESTS = {
    "test_write_then_read",
    "test_missing_key_is_404",
    "test_counter_counts",
    "test_delete",
}


def junit(path: Path) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """(counts of the testsuite, failure message and text by test name, suite properties)."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    failures = {
        case.get("name", ""): (failure.get("message") or "") + (failure.text or "")
        for case in suite.iter("testcase")
        if (failure := case.find("failure")) is not None
    }
    props = suite.find("properties")
    properties = {
        prop.get("name", ""): prop.get("value", "") for prop in (props if props is not None else ())
    }
    return counts, failures, properties


def test_the_github_workflow_runs_end_to_end_here(tmp_path: Path) -> None:
    workspace, workdir = tmp_path / "workspace", tmp_path / "work"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "ci" / "run-locally"),
            "--workspace",
            str(workspace),
            "--workdir",
            str(workdir),
            "--skip-step",
            "Install",  # this environment has the plugin and pytest-timeout already
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    log = run.stdout + run.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    results = {(row["name"], row["matrix"].get("burn")): row for row in summary}
    assert run.returncode == 1, log[-6000:]  # the east job fails, on purpose
    assert results[("images", None)]["result"] == "success", log[-6000:]
    assert results[("suite", "none")]["result"] == "success", log[-6000:]
    assert results[("suite", "west")]["result"] == "success", log[-6000:]
    east = results[("suite", "east")]
    assert east["result"] == "failure", log[-6000:]
    outcomes = {step["name"]: step["outcome"] for step in east["steps"]}
    assert outcomes["Start the stack and wait until every service is healthy"] == "success"
    assert outcomes["Run the suite"] == "failure"
    assert outcomes["Stack logs"] == "success"  # if: failure()
    assert outcomes["Tear the stack down"] == "success"  # if: always()
    assert outcomes["Publish the JUnit XML and the fire report"] == "success"

    artifacts = workdir / "artifacts"
    for burn in ("none", "east", "west"):
        counts, failures, properties = junit(artifacts / f"dcfire-{burn}" / "junit.xml")
        assert counts["tests"] == 7 and counts["errors"] == 0, (burn, counts)
        report = (artifacts / f"dcfire-{burn}" / "report.html").read_text()
        if burn == "none":
            assert failures == {}
            assert "--dcfire-burn" not in report
            assert "dcfire_burn_sites" not in properties, properties
            continue
        # The matrix jobs' JUnit files say which site was dark, so they no longer look alike.
        assert properties.get("dcfire_burn_sites") == burn, properties
        assert properties.get("dcfire_burn_mode") == "fire", properties
        # The burn is in the published files: the report's fire row, and east's failures.
        assert "(whole session: --dcfire-burn)" in report and f"{burn} [fire]" in report
        if burn == "west":
            assert failures == {}
        else:
            assert set(failures) == CACHE_TESTS, failures
            assert all("503" in message for message in failures.values()), failures
    # The header named the burn and its blast radius (adopted members, depends_on label).
    assert "dcfire: east burning: dark: api, cache; stranded elsewhere: api-west" in log
    # Every job's stack is gone (compose down ran, also after the failed run).
    client = docker.from_env()
    try:
        left = [
            c.name
            for c in client.containers.list(all=True)
            if c.labels.get("com.docker.compose.project", "").startswith("dcfire-")
            and c.labels.get("com.docker.compose.project", "").endswith(("-none", "-east", "-west"))
            and str(workspace) in json.dumps(c.labels)
        ]
    finally:
        client.close()
    assert left == []
