"""The test tree itself: pytest imports test modules by basename (no packages, `prepend`
import mode), so two files of the same name in two folders stop the whole run at collection."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name.startswith("test_") or path.name == "conftest.py":
            seen[path.name].append(str(path.relative_to(TESTS)))
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    twice.pop("conftest.py", None)  # conftest files are loaded per folder
    assert twice == {}, f"test modules that share a basename: {twice}"
