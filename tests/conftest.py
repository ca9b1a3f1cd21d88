"""Shared test helpers: small topologies written into a pytester directory, and the light
Hypothesis profile of the repeat runs under the other Pythons."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# scripts/pythons (tox) repeats the tests without Docker under every other Python the package
# claims, with `--hypothesis-profile=repeat`: there every property test still runs, on at most
# this many examples. The repeat asks whether the code works under that interpreter; the main
# run (python3 -m pytest, default profile) draws the full count each test asks for, and keeps
# every health check.
REPEAT_EXAMPLES = 10
# With so few examples Hypothesis starts at once on large inputs (by design), so its checks on
# the cost of generating them would fail the repeat runs at random: those are left to the main run.
GENERATION_CHECKS = [HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.too_slow]
settings.register_profile(
    "repeat", max_examples=REPEAT_EXAMPLES, suppress_health_check=GENERATION_CHECKS
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the repeat profile, cap the tests that ask for more examples and quiet their
    generation checks: a test's own @settings wins over any profile."""
    if settings.get_current_profile_name() != "repeat":
        return
    for item in items:
        test: Any = getattr(item, "obj", None)
        test = getattr(test, "__func__", test)  # a method's function carries the settings
        if not getattr(test, "is_hypothesis_test", False):
            continue
        own = test._hypothesis_internal_use_settings  # what @given reads at each call
        test._hypothesis_internal_use_settings = settings(
            own,
            max_examples=min(own.max_examples, REPEAT_EXAMPLES),
            suppress_health_check=[*own.suppress_health_check, *GENERATION_CHECKS],
        )


TWO_SITES = """
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    image: debian:bookworm-slim
    command: ["python3", "-m", "http.server", "5432"]
    healthcheck: {tcp: 5432}
  api:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
    depends_on: [db]
"""


@pytest.fixture
def write_topology(pytester: pytest.Pytester) -> Callable[..., Path]:
    """Write a topology file (dedented) into the pytester directory; return its path."""

    def write(text: str = TWO_SITES, name: str = "topology.yml") -> Path:
        path = pytester.path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
