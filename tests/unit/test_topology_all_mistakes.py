"""Every mistake of a topology file in one run, in both formats (pytester, and the loader)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_dcfire.errors import TopologyError, TopologyErrors
from pytest_dcfire.topology.load import parse_topology

THREE_MISTAKES = """
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    image: debian:bookworm-slim
    ports: [70000]
  api:
    site: [pangyo, ansna]
    image: debian:bookworm-slim
    depends_on: [db]
  worker:
    site: ansan
    image: debian:bookworm-slim
    depends_on: [auht]
"""

COMPOSE_THREE_MISTAKES = """
services:
  db:
    image: debian:bookworm-slim
    labels: {dcfire.site: pangyo}
    ports: ["70000"]
  api:
    image: debian:bookworm-slim
    labels: {dcfire.site: "pangyo,ansan"}
    restart: always
    network_mode: host
  worker:
    image: debian:bookworm-slim
    labels: {dcfire.site: ansan}
    depends_on: [auht]
"""


def test_three_independent_mistakes_are_reported_in_one_run(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    write_topology(THREE_MISTAKES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile("def test_never_runs():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: *topology.yml: 3 mistakes:",
            "  services.db.ports[[]0[]]: port 70000 is out of range (1-65535)",
            "  services.api.site[[]1[]]: unknown site 'ansna' (did you mean 'ansan'?); "
            "one of: ansan, pangyo",
            "  services.worker.depends_on[[]0[]]: unknown service 'auht'*",
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_compose_file_reports_every_mistake_too(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    write_topology(COMPOSE_THREE_MISTAKES, name="compose.yml")
    pytester.makeini("[pytest]\ndcfire_topology = compose.yml\n")
    pytester.makepyfile("def test_never_runs():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: *compose.yml: 3 mistakes:",
            "  services.db.ports[[]0[]]: port 70000 is out of range (1-65535)",
            "  services.api.network_mode: not supported by pytest-dcfire: *",
            "  services.worker.depends_on[[]0[]]: unknown service 'auht'*",
        ]
    )


def test_several_mistakes_in_one_service_and_one_error_per_key() -> None:
    text = """
sites: [a, b]
services:
  s:
    site: c
    image: "bad image"
    ports: [0, 0]
    healthcheck: {tcp: 1, cmd: [x]}
    colour: blue
"""
    with pytest.raises(TopologyErrors) as info:
        parse_topology(text, "topology.yml")
    paths = [e.path for e in info.value.errors]
    assert paths == [
        "services.s",  # unknown key 'colour'
        "services.s.image",
        "services.s.ports[0]",
        "services.s.ports[1]",
        "services.s.healthcheck",
    ]
    assert isinstance(info.value, TopologyError)
    assert str(info.value).startswith("topology.yml: 5 mistakes:\n  services.s: unknown key")


def test_a_reference_to_a_service_with_its_own_mistake_is_not_a_second_mistake() -> None:
    text = """
sites: [a]
services:
  db: {site: a}
  api: {site: a, image: x, depends_on: [db]}
"""
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "topology.yml")
    assert str(info.value) == (
        "topology.yml: services.db: no image: give `image:` (an image on the engine, e.g. "
        "postgres:16) or `build:` (a directory with a Dockerfile, e.g. ./db)"
    )


def test_one_mistake_keeps_its_single_line_message() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology("sites: [a]\nservices: {s: {site: b, image: x}}\n", "topology.yml")
    assert not isinstance(info.value, TopologyErrors)
    assert str(info.value) == ("topology.yml: services.s.site: unknown site 'b'; one of: a")


def test_every_bad_link_placeholder_is_reported() -> None:
    text = """
sites: [a, b]
services:
  db: {site: a, image: x, ports: [5432]}
  api:
    site: [a, b]
    image: x
    environment: {DB: "${link:db:5433}", CACHE: "${link:cache:6379}"}
"""
    with pytest.raises(TopologyErrors) as info:
        parse_topology(text, "topology.yml")
    assert [e.path for e in info.value.errors] == [
        "services.api.environment.DB",
        "services.api.environment.CACHE",
    ]


def test_health_budget_and_its_older_name() -> None:
    def health(check: str) -> object:
        text = f"sites: [a]\nservices: {{s: {{site: a, image: x, healthcheck: {check}}}}}\n"
        return parse_topology(text, "topology.yml").service("s").healthcheck

    assert health("{tcp: 80, budget: 2m}").budget == 120.0  # type: ignore[attr-defined]
    assert health("{tcp: 80, timeout: 5}").budget == 5.0  # type: ignore[attr-defined]
    assert health("{tcp: 80}").timeout == 60.0  # type: ignore[attr-defined]
    with pytest.raises(TopologyError) as info:
        health("{tcp: 80, budget: 5, timeout: 5}")
    assert str(info.value) == (
        "topology.yml: services.s.healthcheck.timeout: give `budget` or `timeout`, not both: "
        "`timeout` is the older name of `budget`, the seconds allowed in all to become healthy "
        "after a start or a restore"
    )


def test_a_service_with_its_own_mistake_still_has_its_dependencies_checked() -> None:
    # A new user's file: a misspelt key in api hid api's unknown dependency until the next run.
    text = """
sites: [north, south]
services:
  store: {site: nort, image: x, ports: [7000]}
  api:
    site: [north, south]
    image: x
    port: [8080]
    depends_on: [stor, store@south]
"""
    with pytest.raises(TopologyErrors) as info:
        parse_topology(text, "topology.yml")
    assert [(e.path, e.detail) for e in info.value.errors] == [
        (
            "services.api",
            "unknown key 'port' (did you mean 'ports'?); one of: build, clock, command, depends_on, "
            "entrypoint, environment, healthcheck, image, ports, site, volumes",
        ),
        (
            "services.store.site",
            "unknown site 'nort' (did you mean 'north'?); one of: north, south",
        ),
        (
            "services.api.depends_on[0]",
            "unknown service 'stor' (did you mean 'store'?); one of: store",
        ),
    ]


def test_a_compose_service_with_its_own_mistake_still_has_its_dependencies_checked() -> None:
    text = """
services:
  store:
    image: x
    labels: {dcfire.site: north}
  api:
    image: x
    labels: {dcfire.site: south}
    network_mode: host
    depends_on: {stor: {condition: service_started}}
"""
    with pytest.raises(TopologyErrors) as info:
        parse_topology(text, "compose.yml")
    assert [e.path for e in info.value.errors] == [
        "services.api.network_mode",
        "services.api.depends_on.stor",
    ]
    assert "unknown service 'stor' (did you mean 'store'?)" in str(info.value)
