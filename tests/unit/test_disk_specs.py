"""Disk faults as pure logic: `DiskSpec`, a fire's `storage=` kinds and the `@disk` marker,
validated before anything starts, with messages that say what is valid."""

from __future__ import annotations

import re

import pytest

from pytest_dcfire import disk
from pytest_dcfire.diskfaults import DiskSpec, fire_storage
from pytest_dcfire.errors import ConfigError
from pytest_dcfire.firespec import FireSpec

TOPOLOGY = """\
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    image: debian:bookworm-slim
    volumes: {data: /data}
  api:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
"""
SITES = ("pangyo", "ansan")
SERVICES = ("db", "api", "api@pangyo", "api@ansan")


def test_disk_is_pytest_mark_disk() -> None:
    assert disk == pytest.mark.disk


def test_kind_positional_or_keyword() -> None:
    assert DiskSpec.parse(("db", "fail"), {}, SITES, SERVICES) == DiskSpec("db", "fail")
    assert DiskSpec.parse(("pangyo",), {"kind": "full"}, SITES, SERVICES).kind == "full"
    assert DiskSpec.parse(("api@ansan", "freeze"), {}, SITES, SERVICES).target == "api@ansan"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("db", "broken"), {}, "unknown kind 'broken'; valid kinds: freeze, fail, full"),
        (("db", "ful"), {}, "unknown kind 'ful' (did you mean 'full'?)"),
        (("db",), {}, "give the kind of disk fault: freeze, fail, full"),
        (("nowhere", "fail"), {}, "unknown site, service or instance 'nowhere'"),
        ((), {"kind": "fail"}, "name one site, service or instance and a kind"),
        (("db", "fail"), {"knd": 1}, "unknown keyword 'knd' (did you mean 'kind'?)"),
    ],
)
def test_bad_disk_specs_say_what_is_valid(args: tuple, kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=re.escape(message)):
        DiskSpec.parse(args, kwargs, SITES, SERVICES)


@pytest.mark.parametrize(
    ("mode", "storage", "expected"),
    [
        ("fire", True, True),
        ("fire", "freeze", True),
        ("fire", "fail", "fail"),
        ("crash", "full", "full"),
        ("power-loss", False, False),
    ],
)
def test_fire_storage_kinds(mode: str, storage: object, expected: object) -> None:
    assert fire_storage({"storage": storage}, mode, "dc_fire") == expected
    spec = FireSpec.parse(("a",), {"mode": mode, "storage": storage}, ("a",))
    assert spec.storage == expected
    if expected in ("fail", "full"):
        assert spec.describe() == f"a [{mode}] (network=True, storage={expected})"
        assert "storage" in spec.effects()


def test_power_loss_has_its_own_storage_fault() -> None:
    with pytest.raises(ConfigError, match="storage='fail' needs mode 'fire' or 'crash'"):
        FireSpec.parse(("a",), {"mode": "power-loss", "storage": "fail"}, ("a",))


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "disk('db', 'broken')",
            "*@disk('db', 'broken'): unknown kind 'broken'; valid kinds: freeze, fail, full",
        ),
        (
            "disk('api', 'fail')",
            "*@disk('api', 'fail'): 'api' has no volumes (api: no `volumes:` in *topology.yml*",
        ),
        (
            "disk('ansan', 'full')",
            "*@disk('ansan', 'full'): 'ansan' has no volumes*",
        ),
        ("disk('dbb', 'full')", "*unknown site, service or instance 'dbb' (did you mean 'db'?)*"),
    ],
)
def test_bad_disk_markers_stop_the_run_before_anything_starts(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        f"""
        from pytest_dcfire import disk

        @{marker}
        def test_disk():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid disk marker(s):", expected])
    assert "Traceback" not in result.stderr.str()


def test_valid_disk_markers_collect_and_are_documented(pytester: pytest.Pytester) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire, disk

        @disk("db", "fail")
        def test_fail():
            pass

        @disk("pangyo", kind="full")
        def test_full():
            pass

        @dc_fire("pangyo", storage="fail")
        def test_fire_fails_the_disks():
            pass
        """
    )
    result = pytester.runpytest("--co", "-q", "-W", "error::pytest.PytestUnknownMarkWarning")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*test_fail*", "*test_full*", "*test_fire_fails_the_disks*"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.disk(site_or_service, kind):*"])
