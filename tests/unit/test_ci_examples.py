"""examples/ci: the GitHub Actions workflow and the two GitLab CI files (docker-in-docker,
shell executor) validate against the schemas bundled with check-jsonschema (offline), and
each brings the example stack up and waits for it, runs a baseline and one burn per site of
the stack, has per-test timeouts, fails without a JUnit file and always tears down.

tests/docker/test_ci_local.py runs the GitHub workflow's steps for real (run-locally)."""

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
DIND = CI / "gitlab-ci-dind.yml"
SHELL = CI / "gitlab-ci-shell.yml"
COMPOSE = CI / "stack" / "compose.yml"
#: The matrix: a baseline without a fire, then each site of the stack dark.
BURNS = ["none", "east", "west"]


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
    ("path", "schema", "break_it"),
    [
        (GITHUB, "vendor.github-workflows", ("runs-on:", "runs_on:")),
        (DIND, "vendor.gitlab-ci", ("when: always", "when: sometimes")),
        (SHELL, "vendor.gitlab-ci", ("when: always", "when: sometimes")),
    ],
)
def test_valid_against_the_bundled_schema(
    path: Path, schema: str, break_it: tuple[str, str], tmp_path: Path
) -> None:
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check refuses a broken copy: the validation is not vacuous.
    broken = tmp_path / path.name
    text = path.read_text()
    broken.write_text(text.replace(*break_it))
    assert broken.read_text() != text
    assert check_jsonschema(schema, broken).returncode != 0


def test_the_stack_has_the_sites_the_matrix_burns() -> None:
    services = load(COMPOSE)["services"]
    sites = {name: s["labels"]["dcfire.site"] for name, s in services.items()}
    assert sites == {"cache": "east", "api": "east", "api-west": "west"}
    assert sorted(set(sites.values())) == sorted(BURNS[1:])
    assert services["api-west"]["labels"]["dcfire.depends_on"] == "cache"
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert "healthcheck" in service  # what `up --wait` waits for
        # Random host ports only: copies of the stack on one engine never collide.
        assert all(":" not in str(port) for port in service.get("ports", []))


def script_of(doc: dict[str, Any]) -> str:
    return "\n".join(doc["before_script"] + doc["script"])


def test_github_baseline_and_a_burn_per_site_on_a_fresh_runner() -> None:
    doc = load(GITHUB)
    # `on: push` limited to main + pull_request: a PR's commit runs once, not twice.
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads `on` as true
    assert on["push"] == {"branches": ["main"]} and "pull_request" in on
    job = doc["jobs"]["suite"]
    assert job["needs"] == "images"
    assert job["strategy"]["matrix"]["burn"] == BURNS
    assert job["strategy"]["fail-fast"] is False
    assert "matrix.burn" in job["env"]["COMPOSE_PROJECT_NAME"]  # per-job project
    steps = job["steps"]
    runs = [s.get("run", "") for s in steps]
    at = {name: i for i, s in enumerate(steps) if (name := s.get("name"))}
    up = runs[at["Start the stack and wait until every service is healthy"]]
    assert up.startswith("docker compose up") and "--wait" in up
    suite = runs[at["Run the suite"]]
    assert '--dcfire-adopt-compose "$COMPOSE_PROJECT_NAME"' in suite
    assert 'burn=(--dcfire-burn "$BURN")' in suite and "--timeout 60" in suite
    assert '--junitxml "$REPORTS/junit.xml"' in suite
    assert at["Start the stack and wait until every service is healthy"] < at["Run the suite"]
    down = steps[at["Tear the stack down"]]
    assert down["if"] == "always()" and down["run"].startswith("docker compose down")
    # Nothing may turn a failed run (a failed recovery) into a green job.
    assert all("continue-on-error" not in s for s in steps)
    assert all("|| true" not in r for r in runs)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert upload["with"]["if-no-files-found"] == "error"
    assert upload["with"]["path"] == "${{ env.REPORTS }}/"
    # Caching: pip (setup-python), and the images (stack + helper) built once per key.
    assert all(
        s["with"]["cache"] == "pip"
        for j in doc["jobs"].values()
        for s in j["steps"]
        if s.get("uses", "").startswith("actions/setup-python")
    )
    images = "\n".join(s.get("run", "") for s in doc["jobs"]["images"]["steps"])
    assert "python -m pytest_dcfire.prepare --build" in images and "docker save" in images
    assert any(s.get("uses", "").startswith("actions/cache/restore") for s in steps)


@pytest.mark.parametrize("path", [DIND, SHELL])
def test_gitlab_baseline_and_a_burn_per_site(path: Path) -> None:
    doc = load(path)
    job = doc["dcfire"]
    assert job["parallel"]["matrix"] == [{"BURN": BURNS}]
    script = script_of(job)
    assert "docker compose up --detach --build --wait" in script
    assert 'set -- "$@" --dcfire-burn "$BURN"' in script
    assert "--timeout 60" in script
    assert 'if [ ! -s "$REPORTS/junit.xml" ]' in script  # a missing JUnit file fails the job
    assert "allow_failure" not in job and "|| true" not in script
    assert job["after_script"][-1].startswith("docker compose down")
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == "reports/$BURN/junit.xml"
    # No double pipelines for a merge request's branch.
    assert {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"} in (
        doc["workflow"]["rules"]
    )


def test_gitlab_dind_reaches_the_stack_on_the_docker_host() -> None:
    job = load(DIND)["dcfire"]
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2375"
    assert job["variables"]["STACK_HOST"] == "docker"
    assert job["services"][0]["alias"] == "docker"
    assert job["image"].startswith("docker:")  # the docker CLI and Compose v2
    assert "privileged = true" in DIND.read_text()


def test_gitlab_shell_jobs_never_share_a_stack() -> None:
    job = load(SHELL)["dcfire"]
    assert job["variables"]["COMPOSE_PROJECT_NAME"] == "dcfire-$CI_JOB_ID"
    assert job["variables"]["STACK_HOST"] == "127.0.0.1"
    assert "services" not in job and "image" not in job


@pytest.mark.parametrize(
    ("shell", "scripts"),
    [
        (
            "bash",
            [s["run"] for j in load(GITHUB)["jobs"].values() for s in j["steps"] if "run" in s],
        ),
        ("sh", [script_of(load(DIND)["dcfire"]), script_of(load(SHELL)["dcfire"])]),
    ],
)
def test_every_script_parses(shell: str, scripts: list[str], tmp_path: Path) -> None:
    for number, script in enumerate(scripts):
        path = tmp_path / f"{number}.sh"
        path.write_text(script.replace("${{", "__").replace("}}", "__"))
        result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}\n{result.stderr}"


def run_locally() -> Any:
    """examples/ci/run-locally as a module (it has no .py suffix: it is a command)."""
    import importlib.machinery
    import importlib.util

    path = str(CI / "run-locally")
    loader = importlib.machinery.SourceFileLoader("run_locally", path)
    spec = importlib.util.spec_from_loader("run_locally", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_run_locally_evaluates_the_workflow_s_expressions() -> None:
    rl = run_locally()
    values = {
        "github": {"workspace": str(ROOT), "run_id": "7"},
        "matrix": {"burn": "east"},
        "steps": {"cache": {"outputs": {"cache-hit": "true"}}},
        "env": {"REPORTS": "reports/east"},
    }
    ctx = rl.Context(values, job_failed=False)
    name = load(GITHUB)["jobs"]["suite"]["name"]
    assert ctx.render(name) == "suite with east dark"
    assert rl.Context({**values, "matrix": {"burn": "none"}}, False).render(name) == (
        "baseline (no fire)"
    )
    assert ctx.render("dcfire-${{ github.run_id }}-${{ matrix.burn }}") == "dcfire-7-east"
    assert ctx.condition("steps.cache.outputs.cache-hit != 'true'") is False
    assert ctx.condition("steps.missing.outputs.cache-hit != 'true'") is True
    assert ctx.condition(None) is True and ctx.condition("failure()") is False
    failed = rl.Context(values, job_failed=True)
    assert failed.condition(None) is False and failed.condition("always()") is True
    assert failed.condition("steps.cache.outputs.cache-hit == 'true'") is False  # success() &&
    digest = ctx.render("${{ hashFiles('examples/ci/stack/**') }}")
    assert len(digest) == 64 and digest != ctx.render("${{ hashFiles('examples/ci/*.yml') }}")
    with pytest.raises(SystemExit, match=r"function toJSON\(\) is not emulated"):
        ctx.render("${{ toJSON(matrix) }}")
    assert rl.read_pairs("A=1\nB<<EOF\nx\ny\nEOF\nC=a=b\n") == {"A": "1", "B": "x\ny", "C": "a=b"}


def test_every_expression_of_the_github_workflow_is_emulated() -> None:
    """run-locally refuses what it cannot emulate: every `${{ }}` and `uses:` here is known."""
    rl = run_locally()
    doc = load(GITHUB)
    ctx = rl.Context(
        {"github": {"workspace": str(ROOT)}, "matrix": {"burn": "east"}, "runner": {"temp": "/t"}},
        job_failed=False,
    )
    for job in doc["jobs"].values():
        ctx.render({k: v for k, v in job.items() if k not in ("steps", "strategy")})
        for step in job["steps"]:
            ctx.render(step)
            ctx.condition(step.get("if"))
            action = step.get("uses", "").split("@")[0]
            assert action in ("", *rl.ACTIONS), action
