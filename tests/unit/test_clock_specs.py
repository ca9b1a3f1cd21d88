"""Clock faults: the topology key `clock:`, `ClockSpec` and the `@clock` marker, validated
before anything starts, with messages that say what is valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_dcfire import clock
from pytest_dcfire.clockfaults import ClockSpec
from pytest_dcfire.errors import ConfigError, TopologyError
from pytest_dcfire.runtime.clocks import environment
from pytest_dcfire.topology.load import load_topology

TOPOLOGY = """\
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    image: debian:bookworm-slim
    clock: controllable
  api:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
"""


def test_clock_is_pytest_mark_clock() -> None:
    assert clock == pytest.mark.clock


def test_the_topology_key_per_service_and_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(TOPOLOGY)
    topology = load_topology(path)
    assert {s.name: s.clock for s in topology} == {
        "db": "controllable",
        "api@pangyo": "host",
        "api@ansan": "host",
    }
    path.write_text(
        "clock: controllable\n" + TOPOLOGY.replace("clock: controllable", "clock: host")
    )
    topology = load_topology(path)
    assert {s.name: s.clock for s in topology} == {
        "db": "host",
        "api@pangyo": "controllable",
        "api@ansan": "controllable",
    }


def test_a_bad_clock_value_names_file_key_and_valid_values(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("clock: fake\n" + TOPOLOGY.replace("controllable", "yes"))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    text = str(info.value)
    assert str(path) in text
    assert "services.db.clock: expected host or controllable, found a boolean (true)" in text
    assert "clock: expected host or controllable, found a string ('fake')" in text


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("nowhere",), {"offset": 5}, "unknown site, service or instance 'nowhere'"),
        (("db",), {}, "give offset= (seconds) or rate= (nothing to do)"),
        (("db",), {"offset": "1h"}, "offset='1h' must be a number of seconds"),
        (("db",), {"rate": 0}, "rate=0 must be a number > 0"),
        (("db",), {"offest": 5}, "unknown keyword 'offest' (did you mean 'offset'?)"),
        ((), {"offset": 5}, "name one site, service or instance"),
    ],
)
def test_bad_clock_specs_say_what_is_valid(args: tuple, kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClockSpec.parse(args, kwargs, ("pangyo", "ansan"), ("db", "api", "api@ansan"))


def test_the_control_file_text() -> None:
    sites, services = ("a",), ("db",)
    assert ClockSpec.parse(("db",), {"offset": 3600}, sites, services).timestamp() == "+3600"
    assert ClockSpec.parse(("db",), {"offset": -86400}, sites, services).timestamp() == "-86400"
    spec = ClockSpec.parse(("db",), {"rate": 2.0}, sites, services)
    assert spec.timestamp() == "+0 x2"
    assert spec.describe() == "x2"
    env = environment("api@ansan")
    assert env["FAKETIME_TIMESTAMP_FILE"].endswith("/ctl/api-at-ansan")
    assert env["LD_PRELOAD"].endswith("/libfaketimeMT.so.1")
    assert env["FAKETIME_NO_CACHE"] == env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "clock('pangyoo', offset=5)",
            "*@clock('pangyoo', offset=5): unknown site, service or instance 'pangyoo' "
            "(did you mean 'pangyo'?)*",
        ),
        (
            "clock('api', offset=5)",
            "*@clock('api', offset=5): api keep(s) the host's clock (`clock: host`, the "
            "default); add `clock: controllable` to that service in *topology.yml*",
        ),
        (
            "clock('pangyo', offset=5)",
            "*@clock('pangyo', offset=5): api keep(s) the host's clock*",
        ),
        ("clock('db', rate=-1)", "*rate=-1 must be a number > 0*"),
    ],
)
def test_bad_clock_markers_stop_the_run_before_anything_starts(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        f"""
        from pytest_dcfire import clock

        @{marker}
        def test_jump():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid clock marker(s):", expected])
    assert "Traceback" not in result.stderr.str()


def test_a_valid_clock_marker_collects(pytester: pytest.Pytester) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import clock

        @clock("db", offset=-86400, rate=2.0)
        def test_jump():
            pass
        """
    )
    result = pytester.runpytest("--co", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_jump*"])


# -- the chaos kind ----------------------------------------------------------------------------


def test_chaos_draws_clock_jumps_only_where_clocks_are_controllable() -> None:
    from pytest_dcfire.chaos import Targets
    from pytest_dcfire.chaos.generator import generate, parse_kinds, parse_span

    plain = Targets(("a", "b"), {"db": ("a",), "api": ("b",)})
    assert "clock" not in [k.name for k in parse_kinds(None, plain)]
    with pytest.raises(ConfigError, match="fault kind 'clock' needs a site or service with"):
        parse_kinds(["clock"], plain)
    valid = Targets(("a", "b"), {"db": ("a",), "api": ("b",)}, clocks=("a", "db"))
    kinds = parse_kinds(["clock"], valid)
    steps = generate(
        kinds,
        valid,
        7,
        duration=60.0,
        interval=parse_span("interval", 2.0),
        hold=parse_span("hold", 4.0),
        max_at_once=1,
    )
    assert steps and {s.kind for s in steps} == {"clock"}
    assert {s.targets[0] for s in steps} <= {"a", "db"}
    assert all(s.options["offset"] != 0 for s in steps)
    with pytest.raises(ConfigError, match="valid: a, db"):
        kinds[0].check_targets("schedule", ("api",), valid)


def test_compose_files_say_it_in_x_dcfire(tmp_path: Path) -> None:
    path = tmp_path / "compose.yml"
    text = """\
x-dcfire:
  clock: controllable
services:
  db:
    image: debian:bookworm-slim
    labels: {dcfire.site: a}
    x-dcfire: {clock: host}
  api:
    image: debian:bookworm-slim
    x-dcfire: {site: b}
"""
    path.write_text(text)
    assert {s.name: s.clock for s in load_topology(path)} == {"db": "host", "api": "controllable"}
    path.write_text(text.replace("clock: host", "clock: fake"))
    with pytest.raises(TopologyError, match=r"services\.db\.x-dcfire\.clock: expected host or"):
        load_topology(path)
