"""What a user's terminal shows on a real engine: build steps only when something is built,
progress lines on lines of their own and never in a test's captured output."""

from __future__ import annotations

import contextlib
import textwrap
import uuid

import docker
import pytest

pytestmark = pytest.mark.docker

TOPOLOGY = """
sites: [east]
services:
  echo:
    site: east
    build: ./echo
    command: ["python3", "-m", "http.server", "7000"]
    healthcheck: {tcp: 7000}
"""

TESTS = """
def test_first(dcfire_topology):
    print("first test speaking")
    image = dcfire_topology.service("echo").container.image
    open("image.txt", "w").write(image.id)

def test_second(dcfire_topology):
    print("second test speaking")
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rP", *args, timeout=300)


def _captured_sections(lines: list[str]) -> list[str]:
    """The lines pytest shows as captured output of the tests (-rP)."""
    inside, found = False, []
    for line in lines:
        if line.startswith("-") and "Captured" in line:
            inside = True
            continue
        if line.startswith(("=", "_")):
            inside = False
        if inside:
            found.append(line)
    return found


def test_a_cached_image_prints_no_build_steps(pytester: pytest.Pytester) -> None:
    context = pytester.path / "echo"
    context.mkdir()
    token = uuid.uuid4().hex  # a recipe no earlier run has cached
    (context / "Dockerfile").write_text(
        f"FROM debian:bookworm-slim\nRUN echo {token} > /token\nCOPY Dockerfile /Dockerfile\n"
    )
    (pytester.path / "topology.yml").write_text(textwrap.dedent(TOPOLOGY))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(test_quiet=TESTS)
    client = docker.from_env()
    try:
        first = _run(pytester)
        first.assert_outcomes(passed=2)
        first.stdout.fnmatch_lines(
            [
                "dcfire: building image for echo from *",
                "dcfire:   echo: Step 2/*: RUN echo *",
                "dcfire: built echo in * s",
                "dcfire: 1 service instance(s) healthy in * s; images built first in * s",
            ]
        )

        second = _run(pytester)
        second.assert_outcomes(passed=2)
        out = second.stdout.str()
        assert "Step " not in out and "building image" not in out and "built echo" not in out
        second.stdout.fnmatch_lines(["dcfire: 1 service instance(s) healthy in * s"])
        assert "images built first" not in out

        verbose = _run(pytester, "-v")
        verbose.assert_outcomes(passed=2)
        verbose.stdout.fnmatch_lines(
            ["dcfire:   echo: Step 2/*", "dcfire: image for echo: *cached"]
        )

        for result in (first, second):
            # pytest's progress line is whole: both letters after the file's name...
            result.stdout.fnmatch_lines(["test_quiet.py ..*[[]100%[]]"])
            assert not [line for line in result.outlines if line.strip() == "."], result.outlines
            # ...and the tests' captured output is theirs alone.
            captured = _captured_sections(result.outlines)
            assert any("first test speaking" in line for line in captured), result.outlines
            assert not [line for line in captured if "dcfire:" in line], captured
    finally:
        image = pytester.path / "image.txt"
        if image.exists():  # built for this test only: leave no cache behind
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image.read_text(), force=True)
