"""`pytest --dcfire-plan`: the blast radius of every site, printed before anything starts."""

from __future__ import annotations

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
    write_topology,  # type: ignore[no-untyped-def]
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


def test_a_broken_topology_is_one_usage_error(pytester: pytest.Pytester, write_topology) -> None:  # type: ignore[no-untyped-def]
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


def test_blast_radius_works_before_anything_runs(write_topology) -> None:  # type: ignore[no-untyped-def]
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
    write_topology,  # type: ignore[no-untyped-def]
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
