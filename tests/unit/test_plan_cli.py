"""`pytest --dcfire-plan`: the blast radius of every site, printed before anything starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

KAKAO = """
sites: [pangyo, ansan]
services:
  auth:
    site: pangyo
    image: debian:bookworm-slim
  db:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
  api:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
    depends_on: [auth, db]
"""


def test_plan_names_the_single_homed_dependency_and_starts_nothing(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    write_topology(KAKAO)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile("def test_never_runs(dcfire_topology):\n    raise AssertionError\n")
    result = pytester.runpytest("--dcfire-plan")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "topology: *topology.yml: 2 site(s), 5 service instance(s)",
            "start waves:",
            "  1: auth, db@pangyo, db@ansan",
            "  2: api@pangyo, api@ansan",
            "if pangyo burns:",
            "  dark: auth, db@pangyo, api@pangyo",
            "  stranded elsewhere: api@ansan (needs auth: every instance is in pangyo)",
            "if ansan burns:",
            "  stranded elsewhere: none",
            "single-homed dependencies: auth (only in pangyo; needed by api@ansan)",
        ]
    )
    assert "test_never_runs" not in result.stdout.str()


def test_plan_without_topology_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--dcfire-plan")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dcfire-plan needs a topology*"])


def test_a_broken_topology_is_one_usage_error(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology(KAKAO.replace("depends_on: [auth, db]", "depends_on: [auht, db]"))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    result = pytester.runpytest("--dcfire-plan")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: *topology.yml: services.api.depends_on[[]0[]]: unknown service 'auht' (did you mean 'auth'?)*"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_blast_radius_works_before_anything_runs(write_topology: Callable[..., Path]) -> None:
    from pytest_dcfire.topology.load import load_topology
    from pytest_dcfire.topology.plan import blast_radius

    radius = blast_radius(load_topology(write_topology(KAKAO)), "pangyo")
    assert radius.dark_names == ("auth", "db@pangyo", "api@pangyo")
    assert radius.stranded_names == ("api@ansan",)


def test_dcfire_sites_alone_give_a_plan_markers_and_a_header(pytester: pytest.Pytester) -> None:
    """Adopted containers only (testcontainers, docker run): the sites come from the ini."""
    pytester.makeini("[pytest]\ndcfire_sites = east west\n")
    pytester.makepyfile(
        "from pytest_dcfire import dc_fire\n\n@dc_fire('west')\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest("--dcfire-plan")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        [
            "dcfire: topology *.ini: dcfire_sites (adopted containers only): sites east, west; "
            "0 service instance(s)",
            "topology: *.ini: dcfire_sites (adopted containers only): 2 site(s), "
            "0 service instance(s)",
            "  east: (containers adopted at run time)",
            "  west: (containers adopted at run time)",
            "if a site burns: what was adopted into it goes dark*",
        ]
    )
    bad = pytester.runpytest("-p", "no:cacheprovider", "-m", "dc_fire", "--co")
    assert bad.ret == 0
    pytester.makepyfile(
        "from pytest_dcfire import dc_fire\n\n@dc_fire('wset')\ndef test_x():\n    pass\n"
    )
    typo = pytester.runpytest()
    assert typo.ret == pytest.ExitCode.USAGE_ERROR
    typo.stderr.fnmatch_lines(["*unknown site 'wset' (did you mean 'west'?)*east, west*"])


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "dcfire_sites = east we$t\n",
            "ERROR: *.ini: dcfire_sites = east we$t: 'we$t' is not a valid site name*",
        ),
        (
            "dcfire_sites = east east\n",
            "ERROR: *.ini: dcfire_sites = east east: site 'east' is named twice",
        ),
        (
            "dcfire_sites = east\ndcfire_topology = topology.yml\n",
            "ERROR: *.ini: dcfire_sites = east: *topology.yml declares the sites already "
            "(pangyo, ansan); *remove one of the two",
        ),
    ],
)
def test_bad_dcfire_sites_are_one_usage_error(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
    ini: str,
    message: str,
) -> None:
    write_topology(KAKAO)
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


FAILOVER = """
sites: [north, south]
services:
  redis-primary:
    site: north
    image: debian:bookworm-slim
  redis-replica:
    site: south
    image: debian:bookworm-slim
    depends_on: [redis-primary]
  db:
    site: [north, south]
    image: debian:bookworm-slim
  api:
    site: [north, south]
    image: debian:bookworm-slim
    depends_on:
      redis-primary: {condition: started, failover: true}
      db: {site: same}
"""

LINK_DRILLS = """
from pytest_dcfire import brownout, dc_fire, partition


@brownout("api", latency=100)
def test_slow_api():
    pass


@partition("north", "south")
@dc_fire("north")
def test_split_then_burn():
    pass


def test_plain():
    pass
"""


def test_plan_knows_failover_and_per_instance_dependencies(
    pytester: pytest.Pytester,
    write_topology: Callable[..., Path],
) -> None:
    """api@south needs redis-primary only to start (failover: true) and db@south only
    (site: same): when north burns it fails over, it is not stranded; redis-replica, which
    declared nothing, is."""
    write_topology(FAILOVER)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(LINK_DRILLS)
    result = pytester.runpytest("--dcfire-plan", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "start waves:",
            "  1: redis-primary, db@north, db@south",
            "  2: redis-replica, api@north, api@south",
            "if north burns:",
            "  dark: redis-primary, db@north, api@north",
            "  stranded elsewhere: redis-replica (needs redis-primary: every instance is in north)",
            "  fails over: api@south (loses redis-primary: every instance is in north; failover "
            "declared)",
            "if south burns:",
            "  dark: redis-replica, db@south, api@south",
            "  stranded elsewhere: none",
            "single-homed dependencies: redis-primary (only in north; needed by redis-replica)",
            "drills: 1 test(s) burn a site with a dc_fire marker",
            "  *::test_split_then_burn  burns north [[]fire[]]",
            "link-fault drills: 2 test(s) with @brownout, @partition or @flaky_network",
            "  *::test_slow_api         browns out api (+100 ms)",
            "  *::test_split_then_burn  partitions north | south",
            "sites no marker burns: south (add @dc_fire(each_site=True) to a test)",
        ]
    )
    assert "test_plain" not in result.stdout.str()


def test_blast_radius_of_failover_and_same_site(write_topology: Callable[..., Path]) -> None:
    from pytest_dcfire.topology.load import load_topology
    from pytest_dcfire.topology.plan import blast_radius

    topology = load_topology(write_topology(FAILOVER))
    assert topology.service("api@south").depends_on == ("redis-primary", "db@south")
    assert topology.service("api@south").failover == ("redis-primary",)
    north = blast_radius(topology, "north")
    assert north.stranded_names == ("redis-replica",)
    assert [f.name for f in north.failing_over] == ["api@south"]
    assert "api@south" in [s.name for s in north.survivors]
    # Without failover: true, api@south is stranded, as before.
    strict = load_topology(
        write_topology(FAILOVER.replace("{condition: started, failover: true}", "{}"))
    )
    assert blast_radius(strict, "north").stranded_names == ("redis-replica", "api@south")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("failover: true", "failover: yes please"),
            "topology.yml: services.api.depends_on.redis-primary.failover: expected true or "
            "false, found a string ('yes please') (true: needed to start, not to keep running; "
            "the dependent fails over when it is lost)",
        ),
        (
            ("condition: started", "condition: ready"),
            "topology.yml: services.api.depends_on.redis-primary.condition: unknown condition a "
            "string ('ready'); one of: healthy, started (a start waits for the dependency's "
            "health check either way)",
        ),
        (
            ("db: {site: same}", "db: {site: north}"),
            "topology.yml: services.api.depends_on.db.site: expected `same` (each instance needs "
            "the instance of db in its own site), found a string ('north')",
        ),
        (
            ("db: {site: same}", "redis-replica: {site: same}"),
            "topology.yml: services.api.depends_on.redis-replica.site: `site: same` needs a "
            "service with one instance per site; 'redis-replica' is one instance, in south: "
            "depend on it without `site: same`",
        ),
        (
            ("db: {site: same}", "db: {site: same, falover: true}"),
            "topology.yml: services.api.depends_on.db: unknown key 'falover' (did you mean "
            "'failover'?); one of: condition, failover, site",
        ),
    ],
)
def test_dependency_options_are_validated(
    write_topology: Callable[..., Path],
    change: tuple[str, str],
    expected: str,
) -> None:
    from pytest_dcfire.errors import TopologyError
    from pytest_dcfire.topology.load import load_topology

    path = write_topology(FAILOVER.replace(*change))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(info.value) == str(path.parent / "topology.yml") + expected[len("topology.yml") :]


def test_same_site_needs_the_dependency_in_every_site(write_topology: Callable[..., Path]) -> None:
    from pytest_dcfire.errors import TopologyError
    from pytest_dcfire.topology.load import load_topology

    text = FAILOVER.replace("sites: [north, south]", "sites: [north, south, east]").replace(
        "  api:\n    site: [north, south]", "  api:\n    site: [north, south, east]"
    )
    with pytest.raises(
        TopologyError,
        match=r"db has no instance in east \(it runs in north, "
        r"south\), so api@east would have nothing to depend on",
    ):
        load_topology(write_topology(text))
