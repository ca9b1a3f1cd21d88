"""README's first drill (one topology, one test, one run), run as a user copies it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_drill() -> dict[str, str]:
    """The files of README's "A first drill" section, by the name in their first comment."""
    text = README.read_text()
    start = text.index("## A first drill")
    section = text[start : text.index("\n## ", start + 1)]
    files = {}
    for body in re.findall(r"```(?:yaml|ini|python)\n(.*?)```", section, re.S):
        name = body.splitlines()[0].lstrip("# ").strip()
        files[name] = body
    return files


def test_the_first_drill_runs_as_the_readme_says(pytester: pytest.Pytester) -> None:
    files = _first_drill()
    assert sorted(files) == ["pytest.ini", "test_web.py", "topology.yml"]
    for name, body in files.items():
        (pytester.path / name).write_text(body)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "dcfire: 2 service instance(s) healthy in * s",
            "test_web.py .*[[]100%[]]",
            "*dcfire: fires*",
            "test *fire *n *cut ms *skew ms *restore ms *healthy ms *rto s *rpo s *lost *via*",
            "test_ansan_serves_while_pangyo_burns *pangyo [[]fire[]] *1 *",
        ]
    )
