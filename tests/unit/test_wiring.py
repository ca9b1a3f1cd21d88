"""Link placeholders and WAN latency in topology files: parsing, resolution, errors."""

from __future__ import annotations

import pytest

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.load import parse_topology
from pytest_dcfire.topology.model import Latency, Link
from pytest_dcfire.topology.wiring import substitute

TOPOLOGY = """
sites: [pangyo, ansan]
wan: {latency: 20, jitter: 2, pairs: [{sites: [pangyo, ansan], latency: 5}]}
services:
  db: {site: [pangyo, ansan], image: x, ports: [5432]}
  auth: {site: pangyo, image: x, ports: [80]}
  api:
    site: [pangyo, ansan]
    image: x
    environment: {DB: "${link:db:5432}", AUTH_HOST: "${link.host:auth:80}"}
    command: [run, "--auth-port=${link.port:auth:80}"]
"""


def test_links_resolve_per_consumer_instance_and_prefer_the_own_site() -> None:
    topology = parse_topology(TOPOLOGY, "t.yml")
    assert set(topology.links) == {
        Link("api@pangyo", "db", "db@pangyo", 5432),
        Link("api@ansan", "db", "db@ansan", 5432),
        Link("api@pangyo", "auth", "auth", 80),
        Link("api@ansan", "auth", "auth", 80),
    }


def test_wan_default_and_pair_override() -> None:
    wan = parse_topology(
        TOPOLOGY.replace("pairs: [{sites: [pangyo, ansan], latency: 5}]", "pairs: []"), "t.yml"
    ).wan
    assert wan.between("pangyo", "ansan") == Latency(20.0, 2.0)
    assert wan.between("ansan", "ansan") == Latency()
    assert not wan.between("ansan", "ansan")
    wan = parse_topology(TOPOLOGY, "t.yml").wan
    assert wan.between("ansan", "pangyo") == Latency(5.0, 0.0)


def test_no_wan_means_no_latency() -> None:
    topology = parse_topology(TOPOLOGY.replace("wan:", "# wan:"), "t.yml")
    assert not topology.wan.between("pangyo", "ansan")


def test_substitute_fills_host_port_and_both() -> None:
    def address_of(ref: str, port: int) -> tuple[str, int]:
        assert (ref, port) == ("db", 5432)
        return ("10.213.1.1", 40001)

    text = "postgres://${link:db:5432}/x h=${link.host:db:5432} p=${link.port:db:5432} $HOME"
    assert substitute(text, address_of) == (
        "postgres://10.213.1.1:40001/x h=10.213.1.1 p=40001 $HOME"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "${link:db:5432}",
            "${link:db:5433}",
            "services.api.environment.DB: ${link:db:5433}: port 5433 is not in db@pangyo's `ports` (declared: 5432)",
        ),
        (
            "${link:db:5432}",
            "${link:dbb:5432}",
            "link to unknown service 'dbb' (did you mean 'db'?)",
        ),
        (
            "${link:db:5432}",
            "${link db 5432}",
            "malformed link placeholder '${link db 5432}'; write ${link:SERVICE:PORT}",
        ),
        ("${link:db:5432}", "${link:db:99999}", "link port '99999' is not a port number (1-65535)"),
        ("${link:db:5432}", "${link:api:5432}", "api@pangyo links to its own service 'api'"),
        (
            "--auth-port=${link.port:auth:80}",
            "${link:auth}",
            "services.api.command[1]: malformed link placeholder",
        ),
        (
            "latency: 5}",
            "latency: -5}",
            "wan.pairs[0].latency: expected milliseconds between 0 and 60000, found -5",
        ),
        (
            "[pangyo, ansan], latency",
            "[pangyo, pangyo], latency",
            "wan.pairs[0].sites: a pair is two different sites",
        ),
        (
            "[pangyo, ansan], latency",
            "[pangyo, seoul], latency",
            "wan.pairs[0].sites[1]: unknown site 'seoul'; one of: ansan, pangyo",
        ),
        ("jitter: 2,", "jiter: 2,", "wan: unknown key 'jiter' (did you mean 'jitter'?)"),
    ],
)
def test_bad_links_and_wan_name_the_key(old: str, new: str, message: str) -> None:
    assert old in TOPOLOGY
    with pytest.raises(TopologyError) as info:
        parse_topology(TOPOLOGY.replace(old, new), "t.yml")
    assert message in str(info.value)
    assert str(info.value).startswith("t.yml: ")


def test_a_link_to_a_per_site_service_absent_from_the_consumer_site_must_name_one() -> None:
    text = TOPOLOGY.replace("db: {site: [pangyo, ansan]", "db: {site: [pangyo]")
    with pytest.raises(
        TopologyError, match=r"it runs one instance per site \(db@pangyo\) and none in ansan"
    ):
        parse_topology(text, "t.yml")
    fixed = text.replace("${link:db:5432}", "${link:db@pangyo:5432}")
    assert {link.target for link in parse_topology(fixed, "t.yml").links} >= {"db@pangyo"}


def test_compose_files_take_placeholders_and_x_dcfire_wan() -> None:
    compose = """
x-dcfire: {sites: [a, b], wan: {latency: 3}}
services:
  db: {image: x, labels: {dcfire.site: a}, ports: ["5432"]}
  api: {image: x, labels: {dcfire.site: b}, environment: {DB: "$${HOME} ${link:db:5432}"}}
"""
    topology = parse_topology(compose, "docker-compose.yml")
    assert topology.links == (Link("api", "db", "db", 5432),)
    assert topology.wan.between("a", "b") == Latency(3.0)
    assert topology.service("api").env["DB"] == "${HOME} ${link:db:5432}"


def test_the_plan_lists_links_with_their_wan_latency() -> None:
    from pytest_dcfire.topology.plan import render_plan

    plan = render_plan(parse_topology(TOPOLOGY, "t.yml"))
    assert "links (through Toxiproxy; cut by fires, partitions; slowed by brownouts):" in plan
    assert "  api@ansan -> auth:80 [WAN +5 ms each way]\n" in plan
    assert "  api@pangyo -> db@pangyo:5432\n" in plan
