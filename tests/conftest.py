"""Shared test helpers: small topologies written into a pytester directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

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
