"""The documentation site's sources: every page reachable, README's links alive, and the first
drill the same in README and on the getting-started page (the docker suite runs README's)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "scripts" / "docs"
PAGES = DOCS / "pages"


def _nav_files(entries: list[object]) -> set[str]:
    found: set[str] = set()
    for entry in entries:
        if isinstance(entry, str):
            found.add(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                found |= _nav_files(value) if isinstance(value, list) else {str(value)}
    return found


def _drill(text: str) -> list[str]:
    start = text.index("## A first drill")
    section = text[start : text.index("\n## ", start + 1)]
    return re.findall(r"```(?:yaml|ini|python)\n(.*?)```", section, re.S)


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page() -> None:
    config = yaml.safe_load((DOCS / "mkdocs.yml").read_text())
    pages = {str(p.relative_to(PAGES)) for p in PAGES.rglob("*.md")}
    assert _nav_files(config["nav"]) == pages


def test_readme_links_to_pages_that_exist() -> None:
    links = re.findall(r"\]\((scripts/docs/pages/[^)#]+)", (ROOT / "README.md").read_text())
    assert links, "README links to the documentation pages"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []


def test_the_first_drill_is_the_same_in_readme_and_getting_started() -> None:
    readme = _drill((ROOT / "README.md").read_text())
    page = _drill((PAGES / "getting-started.md").read_text())
    assert len(readme) == 3
    assert readme == page
