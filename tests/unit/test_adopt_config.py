"""Adoption's pure logic: health checks from arguments and labels, a compose project's
members and sites, and the error messages (the engine is a stand-in listing containers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.runtime.adopt import (
    declared_sites,
    find_compose_project,
    parse_depends,
    parse_healthcheck,
    resolve_topology,
)
from pytest_dcfire.topology.model import HealthCheck, Service, Site, Topology
from pytest_dcfire.topology.plan import blast_radius, render_plan


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
    status: str = "running"

    @property
    def short_id(self) -> str:
        return self.id[:10]


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self._all = containers
        self.filters: list[Any] = []

    def list(self, all: bool = False, filters: Any = None) -> list[FakeContainer]:
        assert all, "stopped members must be listed too"
        self.filters.append(filters)
        project = filters["label"].split("=", 1)[1]
        return [c for c in self._all if c.labels.get("com.docker.compose.project") == project]


def member(
    cid: str,
    service: str,
    site: str | None,
    number: int = 1,
    status: str = "running",
    extra: dict[str, str] | None = None,
) -> Any:
    labels = {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": str(number),
        **(extra or {}),
    }
    if site is not None:
        labels["dcfire.site"] = site
    return FakeContainer(cid, f"shop_{service}_{number}", labels, status)


def test_members_sites_and_the_outsiders() -> None:
    client = FakeClient(
        [
            member("c1", "db", "pangyo", extra={"dcfire.healthcheck": "tcp:5432"}),
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
    topology = project.topology(None)
    assert project.header(topology) == [
        "dcfire: adopted compose project shop: ansan: api-1, api-2; pangyo: db",
        "dcfire: not in any site (no dcfire.site label, never burned): tool",
    ]
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
    bad_health = member("c1", "db", "a", extra={"dcfire.healthcheck": "tcp:five"})
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
        "dcfire_adopt_compose = shop: service cache: label dcfire.site=seoul names no site of "
        "topology.yml; valid sites: pangyo, ansan"
    )


#: The issue's stack: api and cache in east, api-west in west, which needs east's cache.
def stack(api_west_needs: str = "cache", west_status: str = "running") -> FakeClient:
    return FakeClient(
        [
            member("c1", "api", "east", extra={"dcfire.depends_on": "cache"}),
            member("c2", "cache", "east"),
            member(
                "c3",
                "api-west",
                "west",
                status=west_status,
                extra={"dcfire.depends_on": api_west_needs},
            ),
        ]
    )


def test_adopted_members_count_in_the_plan_with_their_blast_radius() -> None:
    project = find_compose_project(stack(), "shop", "dcfire_adopt_compose")
    assert [m.depends_on for m in project.members] == [("cache",), ("cache",), ()]
    planned = project.planned(project.topology(None))
    east = blast_radius(planned, "east")
    assert east.dark_names == ("api", "cache")
    assert [s.describe() for s in east.stranded] == [
        "api-west (needs cache: every instance is in east)"
    ]
    assert blast_radius(planned, "west").dark_names == ("api-west",)
    plan = render_plan(planned, [m.name for m in project.members])
    assert plan.splitlines() == [
        "topology: compose project shop (adopted): 2 site(s), 0 service instance(s), 3 adopted",
        "sites:",
        "  east: api (adopted), cache (adopted)",
        "  west: api-west (adopted)",
        "start waves: none (every member is adopted: nothing is started)",
        "if east burns:",
        "  dark: api, cache",
        "  stranded elsewhere: api-west (needs cache: every instance is in east)",
        "if west burns:",
        "  dark: api-west",
        "  stranded elsewhere: none",
        "single-homed dependencies: cache (only in east; needed by api-west)",
    ]
    assert project.header(project.topology(None), ["east"]) == [
        "dcfire: adopted compose project shop: east: api, cache; west: api-west",
        "dcfire: east burning: dark: api, cache; stranded elsewhere: api-west (needs cache: "
        "every instance is in east)",
    ]


def test_a_dependency_label_naming_no_member_is_refused() -> None:
    project = find_compose_project(stack("cahce"), "shop", "dcfire_adopt_compose")
    with pytest.raises(ConfigError) as err:
        project.topology(None)
    assert str(err.value) == (
        "dcfire_adopt_compose = shop: service api-west: label dcfire.depends_on=cahce: "
        "depends_on 'cahce' names no member (did you mean 'cache'?); members: api, api-west, "
        "cache"
    )
    with pytest.raises(ConfigError, match="depends_on 'a b/c' is not a member name"):
        parse_depends(["a b/c"], "here")
    assert parse_depends("cache, db@east  queue", "here") == ("cache", "db@east", "queue")


def test_a_stopped_member_keeps_its_site_and_says_not_running() -> None:
    project = find_compose_project(stack(west_status="exited"), "shop", "dcfire_adopt_compose")
    topology = project.topology(None)
    assert topology.site_names == ("east", "west")  # not "unknown site 'west'"
    assert project.header(topology)[0] == (
        "dcfire: adopted compose project shop: east: api, cache; west: api-west (not running: "
        "exited)"
    )
    assert "  not running (a session would refuse them): api-west (not running: exited)" in (
        project.plan_lines()
    )


def test_dcfire_sites_declare_the_sites_of_adopted_containers() -> None:
    where = "pytest.ini: dcfire_sites"
    topology = resolve_topology(None, None, ["east", "west"], where)
    assert topology is not None
    assert topology.site_names == ("east", "west") and topology.services == ()
    assert declared_sites(["east,west", "north"], where) == ("east", "west", "north")
    assert resolve_topology(None, None, [], where) is None
    # With a compose project, its labels must name the declared sites (a typo is caught).
    project = find_compose_project(stack(), "shop", "dcfire_adopt_compose")
    both = resolve_topology(None, project, ["west", "east", "north"], where)
    assert both is not None and both.site_names == ("west", "east", "north")
    with pytest.raises(ConfigError) as err:
        resolve_topology(None, project, ["east", "wset"], where)
    assert str(err.value) == (
        "dcfire_adopt_compose = shop: service api-west: label dcfire.site=west names no site "
        "of dcfire_sites (did you mean 'wset'?); valid sites: east, wset"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["east", "we!"], "pytest.ini: dcfire_sites = east we!: 'we!' is not a valid site"),
        (["east", "-x"], "'-x' is not a valid site name"),
        (["east", "east"], "pytest.ini: dcfire_sites = east east: site 'east' is named twice"),
    ],
)
def test_bad_dcfire_sites(value: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        declared_sites(value, "pytest.ini: dcfire_sites")
    assert message in str(err.value)


def test_dcfire_sites_and_a_topology_file_conflict() -> None:
    base = Topology("topology.yml", (Site("pangyo"),), (Service("db", "db", "pangyo", image="x"),))
    with pytest.raises(ConfigError) as err:
        resolve_topology(base, None, ["east"], "pytest.ini: dcfire_sites")
    assert str(err.value) == (
        "pytest.ini: dcfire_sites = east: topology.yml declares the sites already (pangyo); "
        "dcfire_sites is for sessions without a topology file: remove one of the two"
    )
