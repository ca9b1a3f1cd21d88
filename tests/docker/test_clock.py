"""`dcfire.clock` and `@clock` move the wall clock a `clock: controllable` service reads.

Two sites: `tick` (controllable) in a, `plain` (the default, host) in b. A jump of +3600 or
-86400 s shows in `time.time()` of a new process in `tick` at once, never in `plain` nor
on the host, and goes away when the fault is lifted (by hand, by `restore()`, at the end
of the test); rate 2.0 makes one real second two. Runs as an inner session.
"""

from __future__ import annotations

import textwrap

import pytest
from inner_session import run_inner

pytestmark = pytest.mark.docker

TOPOLOGY = """
sites: [a, b]
services:
  tick:
    site: a
    image: debian:bookworm-slim
    command: ["sleep", "infinity"]
    clock: controllable
  plain:
    site: b
    image: debian:bookworm-slim
    command: ["sleep", "infinity"]
"""

HELPERS = """
import time

import pytest

from pytest_dcfire import ConfigError, clock

#: Margin for an exec on a loaded machine: offsets tested are hours apart.
SLACK = 30.0
HOST_SKEW = time.time() - time.monotonic()


def wall(topology, name):
    code, out = topology.service(name).exec(["python3", "-c", "import time; print(time.time())"])
    assert code == 0, out
    return float(out.strip()) - time.time()


def assert_offset(topology, name, offset):
    seen = wall(topology, name)
    assert abs(seen - offset) < SLACK, (name, seen, offset)


def assert_host_untouched():
    assert abs((time.time() - time.monotonic()) - HOST_SKEW) < 1.0
"""

TESTS = """
def test_a_jump_moves_only_the_controllable_service(dcfire, dcfire_topology):
    t = dcfire_topology
    assert_offset(t, "tick", 0)
    fault = dcfire.clock("tick", offset=3600)
    assert fault.kind == "clock" and fault.active
    assert_offset(t, "tick", 3600)
    assert_offset(t, "plain", 0)
    assert_host_untouched()
    fault.lift()
    assert_offset(t, "tick", 0)
    with dcfire.clock("a", offset=-86400):
        assert_offset(t, "tick", -86400)
        assert_offset(t, "plain", 0)
    assert_offset(t, "tick", 0)
    assert_host_untouched()


def test_rate_two_makes_a_second_two(dcfire, dcfire_topology):
    dcfire.clock("tick", rate=2.0)
    code, out = dcfire_topology.service("tick").exec(["python3", "-c", (
        "import time\\n"
        "w, m = time.time(), time.monotonic()\\n"
        "while time.monotonic() - m < 1.0: pass\\n"
        "print(time.time() - w)"
    )])
    assert code == 0, out
    assert 1.7 < float(out.strip()) < 2.3, out


def test_restore_lifts_it(dcfire, dcfire_topology):
    dcfire.clock("tick", offset=-86400)
    dcfire.restore()
    assert_offset(dcfire_topology, "tick", 0)


@clock("tick", offset=-86400)
def test_the_marker_moves_it_for_the_test(dcfire_topology):
    assert_offset(dcfire_topology, "tick", -86400)


def test_every_clock_was_put_back(dcfire, dcfire_topology):
    assert_offset(dcfire_topology, "tick", 0)
    assert_offset(dcfire_topology, "plain", 0)
    assert_host_untouched()


def test_a_schedule_jumps_the_clock_and_lifts_it(dcfire, dcfire_topology):
    steps = [(0.0, "clock", "tick", {"offset": 3600, "for": 60.0})]
    with dcfire.schedule(steps, quiet=0.1) as s:
        dcfire.eventually(lambda: assert_offset(dcfire_topology, "tick", 3600), timeout=20)
    assert [e.kind for e in s.events] == ["clock"] and s.events[0].lifted is not None
    assert_offset(dcfire_topology, "tick", 0)


def test_a_host_clock_service_is_a_clear_error(dcfire):
    with pytest.raises(ConfigError, match="plain keep.*clock: controllable"):
        dcfire.clock("plain", offset=5)
"""


def test_clock_faults(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, HELPERS + textwrap.dedent(TESTS))
    result.assert_outcomes(passed=7)
