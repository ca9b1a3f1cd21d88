"""examples/ci: the GitHub Actions workflow and the GitLab CI file parse, validate against
the schemas bundled with check-jsonschema (offline), and really run one job per site with
`--dcfire-burn`, junit XML and the HTML report published even when the job fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
#: The sites of README's example topology (and of the demo), which the examples name.
SITES = ["pangyo", "ansan"]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema")
    if exe is None:
        pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
    return subprocess.run(
        [exe, "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("path", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")]
)
def test_valid_against_the_bundled_schema(path: Path, schema: str, tmp_path: Path) -> None:
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check refuses a broken copy: the validation is not vacuous.
    broken = tmp_path / path.name
    text = path.read_text()
    broken.write_text(
        text.replace("runs-on:", "runs_on:")
        if path == GITHUB
        else text.replace("when: always", "when: sometimes")
    )
    assert broken.read_text() != text
    assert check_jsonschema(schema, broken).returncode != 0


def test_demo_topology_has_the_sites_the_examples_burn() -> None:
    assert load(ROOT / "examples" / "demo" / "topology.yml")["sites"] == SITES


def test_github_one_job_per_site_reports_always_published() -> None:
    doc = load(GITHUB)
    job = doc["jobs"]["burn"]
    assert job["strategy"]["matrix"]["site"] == SITES
    assert job["strategy"]["fail-fast"] is False
    runs = [s for s in job["steps"] if "--dcfire-burn" in s.get("run", "")]
    assert len(runs) == 1
    command = runs[0]["run"]
    assert '--dcfire-burn "${{ matrix.site }}"' in command
    assert '--junitxml="$REPORTS/junit.xml"' in command
    assert '--dcfire-report="$REPORTS/report.html"' in command
    # Nothing may turn a failed run (a failed recovery) into a green job.
    assert all("continue-on-error" not in s for s in job["steps"])
    assert "|| true" not in command
    upload = next(
        s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert upload["if"] == "${{ always() }}"
    assert upload["with"]["path"] == "${{ env.REPORTS }}/"
    assert job["env"]["REPORTS"] == "reports/${{ matrix.site }}"


def test_gitlab_one_job_per_site_reports_always_published() -> None:
    doc = load(GITLAB)
    job = doc["dcfire"]
    assert job["parallel"]["matrix"] == [{"SITE": SITES}]
    command = " ".join(job["script"])
    assert '--dcfire-burn "$SITE"' in command
    assert '--junitxml="reports/$SITE/junit.xml"' in command
    assert '--dcfire-report="reports/$SITE/report.html"' in command
    assert "allow_failure" not in job and "|| true" not in command
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == "reports/$SITE/junit.xml"
    assert artifacts["paths"] == ["reports/$SITE/"]
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2375"
