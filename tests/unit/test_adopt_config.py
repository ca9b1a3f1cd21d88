"""Adoption's pure logic: health checks from arguments and labels, a compose project's
members and sites, and the error messages (the engine is a stand-in listing containers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.runtime.adopt import (
    find_compose_project,
    parse_healthcheck,
)
from pytest_dcfire.topology.model import HealthCheck, Service, Site, Topology


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ({"tcp": 5432}, HealthCheck("tcp", port=5432)),
        ("tcp:5432", HealthCheck("tcp", port=5432)),
        ({"http": "/health", "port": 8080}, HealthCheck("http", port=8080, path="/health")),
        ("http:/health:8080", HealthCheck("http", port=8080, path="/health")),
        ({"cmd": ["pg_isready", "-q"]}, HealthCheck("cmd", cmd=("pg_isready", "-q"))),
        ("cmd:pg_isready -q", HealthCheck("cmd", cmd=("pg_isready", "-q"))),
    ],
)
def test_healthchecks(value: Any, expected: HealthCheck | None) -> None:
    assert parse_healthcheck(value, "here") == expected


@pytest.mark.parametrize("value", [{"tcp": "x"}, "udp:53", {"http": "/"}, 42, {"cmd": []}])
def test_bad_healthchecks_name_where_and_what_is_valid(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^here: healthcheck .* is not valid; use \{'tcp'"):
        parse_healthcheck(value, "here")


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:10]


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self._all = containers
        self.filters: list[Any] = []

    def list(self, filters: Any = None) -> list[FakeContainer]:
        self.filters.append(filters)
        project = filters["label"].split("=", 1)[1]
        return [c for c in self._all if c.labels.get("com.docker.compose.project") == project]


def member(cid: str, service: str, site: str | None, number: int = 1, **extra: str) -> Any:
    labels = {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": str(number),
        **extra,
    }
    if site is not None:
        labels["dcfire.site"] = site
    return FakeContainer(cid, f"shop_{service}_{number}", labels)


def test_members_sites_and_the_outsiders() -> None:
    client = FakeClient(
        [
            member("c1", "db", "pangyo", **{"dcfire.healthcheck": "tcp:5432"}),
            member("c2", "api", "ansan", 1),
            member("c3", "api", "ansan", 2),
            member("c4", "tool", None),
            FakeContainer("c5", "other", {"com.docker.compose.project": "elsewhere"}),
        ]
    )
    project = find_compose_project(client, " shop ", "dcfire_adopt_compose")
    assert client.filters == [{"label": "com.docker.compose.project=shop"}]
    assert [(m.id, m.name, m.site) for m in project.members] == [
        ("c2", "api-1", "ansan"),
        ("c3", "api-2", "ansan"),
        ("c1", "db", "pangyo"),
    ]
    assert project.members[2].healthcheck == HealthCheck("tcp", port=5432)
    assert project.outside == ["tool"]
    assert project.sites == ("ansan", "pangyo")
    assert project.header() == [
        "dcfire: adopted compose project shop: api-1@ansan, api-2@ansan, db@pangyo",
        "dcfire: not in any site (no dcfire.site label, never burned): tool",
    ]
    topology = project.topology(None)
    assert topology.site_names == ("ansan", "pangyo")
    assert topology.services == ()
    assert topology.source == "compose project shop (adopted)"


def test_a_project_that_is_not_running() -> None:
    with pytest.raises(ConfigError) as err:
        find_compose_project(FakeClient([]), "shop", "--dcfire-adopt-compose")
    assert str(err.value).startswith(
        "--dcfire-adopt-compose = shop: no running container of compose project 'shop'; "
        "start it before pytest (docker-compose -p shop up -d)"
    )


def test_a_project_without_site_labels() -> None:
    with pytest.raises(ConfigError) as err:
        find_compose_project(FakeClient([member("c1", "db", None)]), "shop", "dcfire_adopt_compose")
    assert "no service of the project has a dcfire.site label" in str(err.value)
    assert "(services found: db)" in str(err.value)


def test_bad_labels_are_named() -> None:
    with pytest.raises(ConfigError, match=r"service db: label dcfire.site='a b' is not a valid"):
        find_compose_project(FakeClient([member("c1", "db", "a b")]), "shop", "x")
    bad_health = member("c1", "db", "a", **{"dcfire.healthcheck": "tcp:five"})
    with pytest.raises(ConfigError, match=r"service db: dcfire.healthcheck: healthcheck"):
        find_compose_project(FakeClient([bad_health]), "shop", "x")


def test_with_a_topology_file_the_labels_must_name_its_sites() -> None:
    base = Topology(
        "topology.yml",
        (Site("pangyo"), Site("ansan")),
        (Service("db", "db", "pangyo", image="x"),),
    )
    project = find_compose_project(FakeClient([member("c1", "cache", "pangyo")]), "shop", "k")
    assert project.topology(base) is base
    wrong = find_compose_project(FakeClient([member("c1", "cache", "seoul")]), "shop", "k")
    with pytest.raises(ConfigError) as err:
        wrong.topology(base)
    assert str(err.value) == (
        "dcfire_adopt_compose = shop: label dcfire.site=seoul names no site of topology.yml; "
        "valid sites: pangyo, ansan"
    )
