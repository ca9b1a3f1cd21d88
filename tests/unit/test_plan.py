"""Start waves and blast radius: what a fire takes down, including what it strands elsewhere."""

from __future__ import annotations

import textwrap

import pytest

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.load import parse_topology
from pytest_dcfire.topology.model import Service, Site, Topology
from pytest_dcfire.topology.plan import (
    blast_radius,
    render_plan,
    single_homed,
    waves,
)


def topo(text: str) -> Topology:
    return parse_topology(textwrap.dedent(text), "topology.yml")


def names(plan: tuple[tuple[Service, ...], ...]) -> list[list[str]]:
    return [[service.name for service in wave] for wave in plan]


def test_waves_of_a_chain() -> None:
    topology = topo(
        """
        sites: [a]
        services:
          web: {site: a, image: x, depends_on: [api]}
          api: {site: a, image: x, depends_on: [db]}
          db: {site: a, image: x}
        """
    )
    assert names(waves(topology)) == [["db"], ["api"], ["web"]]


def test_waves_of_a_diamond_keep_file_order_within_a_wave() -> None:
    topology = topo(
        """
        sites: [a, b]
        services:
          bottom: {site: a, image: x, depends_on: [right, left]}
          right: {site: b, image: x, depends_on: [top]}
          left: {site: a, image: x, depends_on: [top]}
          top: {site: [a, b], image: x}
          lone: {site: b, image: x}
        """
    )
    assert names(waves(topology)) == [["top@a", "top@b", "lone"], ["right", "left"], ["bottom"]]


def test_a_dependency_on_a_service_waits_for_all_its_instances() -> None:
    topology = topo(
        """
        sites: [a, b]
        services:
          db: {site: [a, b], image: x, depends_on: [seed@b]}
          seed: {site: [a, b], image: x}
          api: {site: [a, b], image: x, depends_on: [db]}
          cache: {site: a, image: x, depends_on: [seed@a]}
        """
    )
    assert names(waves(topology)) == [
        ["seed@a", "seed@b"],
        ["db@a", "db@b", "cache"],
        ["api@a", "api@b"],
    ]


def test_waves_refuse_a_cycle_in_a_hand_built_topology() -> None:
    topology = Topology(
        "built",
        (Site("a"),),
        (
            Service("x", "x", "a", image="i", depends_on=("y",)),
            Service("y", "y", "a", image="i", depends_on=("x",)),
        ),
    )
    with pytest.raises(TopologyError, match="dependency cycle among x, y"):
        waves(topology)


KAKAO = """
sites: [pangyo, ansan]
services:
  auth: {site: pangyo, image: auth}
  ops: {site: pangyo, image: ops}
  db: {site: [pangyo, ansan], image: db}
  api:
    site: [pangyo, ansan]
    image: api
    depends_on: [auth, db]
  web:
    site: [pangyo, ansan]
    image: web
    depends_on: [api]
  push: {site: ansan, image: push, depends_on: [ops]}
"""


def test_blast_radius_of_a_single_homed_dependency() -> None:
    radius = blast_radius(topo(KAKAO), "pangyo")
    assert radius.sites == ("pangyo",)
    assert radius.dark_names == ("auth", "ops", "db@pangyo", "api@pangyo", "web@pangyo")
    assert radius.stranded_names == ("api@ansan", "web@ansan", "push")
    api, web, push = radius.stranded
    assert (api.dependency, api.chain, api.root_sites) == ("auth", ("auth",), ("pangyo",))
    assert api.reason() == "needs auth: every instance is in pangyo"
    # transitive: web@ansan still has api@ansan, but that one is stranded by auth
    assert (web.dependency, web.chain) == ("api", ("api", "auth"))
    assert web.describe() == "web@ansan (needs api -> auth: every instance of auth is in pangyo)"
    assert push.describe() == "push (needs ops: every instance is in pangyo)"
    assert [s.name for s in radius.survivors] == ["db@ansan"]
    assert radius.affected == radius.dark_names + radius.stranded_names


def test_the_other_site_burning_strands_nothing() -> None:
    radius = blast_radius(topo(KAKAO), "ansan")
    assert radius.dark_names == ("db@ansan", "api@ansan", "web@ansan", "push")
    assert radius.stranded == ()
    assert radius.describe() == [
        "dark: db@ansan, api@ansan, web@ansan, push",
        "stranded elsewhere: none",
    ]


def test_instance_specific_dependencies() -> None:
    topology = topo(
        """
        sites: [pangyo, ansan]
        services:
          db: {site: [pangyo, ansan], image: db}
          writer: {site: ansan, image: w, depends_on: [db@pangyo]}
          reader: {site: ansan, image: r, depends_on: [db]}
          report: {site: ansan, image: r, depends_on: [writer]}
        """
    )
    radius = blast_radius(topology, "pangyo")
    assert radius.stranded_names == ("writer", "report")
    writer, report = radius.stranded
    assert writer.reason() == "needs db@pangyo: it is in pangyo"
    assert report.reason() == "needs writer -> db@pangyo: db@pangyo is in pangyo"
    assert blast_radius(topology, "ansan").stranded == ()


def test_burning_several_sites_at_once() -> None:
    topology = topo(
        """
        sites: [a, b, c]
        services:
          db: {site: [a, b], image: db}
          api: {site: c, image: api, depends_on: [db]}
        """
    )
    assert blast_radius(topology, "a").stranded == ()
    both = blast_radius(topology, "a", "b")
    assert both.sites == ("a", "b")
    assert [s.describe() for s in both.stranded] == ["api (needs db: every instance is in a or b)"]


def test_shortest_explanation_wins() -> None:
    topology = topo(
        """
        sites: [a, b]
        services:
          auth: {site: a, image: x}
          api: {site: [a, b], image: x, depends_on: [auth]}
          web: {site: b, image: x, depends_on: [api, auth]}
        """
    )
    (_api, web) = blast_radius(topology, "a").stranded
    assert web.chain == ("auth",)


def test_unknown_site() -> None:
    with pytest.raises(KeyError, match=r"unknown site 'pangyoo' \(did you mean 'pangyo'\?\)"):
        blast_radius(topo(KAKAO), "pangyoo")


def test_single_homed_dependencies() -> None:
    homes = single_homed(topo(KAKAO))
    assert [h.describe() for h in homes] == [
        "auth (only in pangyo; needed by api@ansan)",
        "ops (only in pangyo; needed by push)",
    ]


def test_render_plan() -> None:
    text = render_plan(topo(KAKAO))
    assert text == textwrap.dedent(
        """\
        topology: topology.yml: 2 site(s), 9 service instance(s)
        sites:
          pangyo: auth, ops, db@pangyo, api@pangyo, web@pangyo
          ansan: db@ansan, api@ansan, web@ansan, push
        start waves:
          1: auth, ops, db@pangyo, db@ansan
          2: api@pangyo, api@ansan, push
          3: web@pangyo, web@ansan
        if pangyo burns:
          dark: auth, ops, db@pangyo, api@pangyo, web@pangyo
          stranded elsewhere: api@ansan (needs auth: every instance is in pangyo)
                              web@ansan (needs api -> auth: every instance of auth is in pangyo)
                              push (needs ops: every instance is in pangyo)
        if ansan burns:
          dark: db@ansan, api@ansan, web@ansan, push
          stranded elsewhere: none
        single-homed dependencies: auth (only in pangyo; needed by api@ansan); ops (only in pangyo; needed by push)
        """
    )


def test_render_plan_of_a_well_replicated_topology() -> None:
    topology = topo(
        """
        name: kv
        sites: {pangyo: {storage: 64M}, ansan: {}, gasan: {}}
        services:
          kv: {site: [pangyo, ansan], image: kv, volumes: {data: /data}}
        """
    )
    lines = render_plan(topology).splitlines()
    result = pytest.LineMatcher(lines)
    result.fnmatch_lines(
        [
            "topology: topology.yml (project kv): 3 site(s), 2 service instance(s)",
            "  pangyo: kv@pangyo [[]1 volume(s) on its storage, 64 MiB each[]]",
            "  gasan: (no services)",
            "  1: kv@pangyo, kv@ansan",
            "if gasan burns:",
            "  dark: nothing (no services in this site)",
            "no single-homed dependencies",
        ]
    )
