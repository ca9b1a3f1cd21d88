"""Schedules and seeded chaos against real containers, in inner pytest sessions.

Two sites of echo servers with data on their pools. A rolling fire (`dcfire.schedule`) darkens
east, then west, each in its window only, as a probe sees from the test process; every
event is a mark in a workload's history and a row of the fire table. A seeded `dcfire.chaos`
over every kind available run in two sessions gives the same kinds, targets and times.
Every fault is lifted after `.stop()` and after a failing test: the sites answer again.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from inner_session import ECHO_HELPERS, echo_topology, run_inner

pytestmark = pytest.mark.docker

TOPOLOGY = echo_topology()

HELPERS = """
import json, threading, time


def probe_until(handles, seconds):
    '''Probe each handle (a new connection, 0.5 s timeout) in its own thread until `seconds`
    from now; return {name: [(start, end, dark)]} in monotonic time.'''
    samples = {h.name: [] for h in handles}
    deadline = time.monotonic() + seconds

    def run(h):
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                dark = echo_once(h.direct_address(7000), timeout=0.5) != b"ping"
            except OSError:
                dark = True
            samples[h.name].append((start, time.monotonic(), dark))
            time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples


def all_answer(topology):
    for h in topology:
        assert echo_once(h.direct_address(7000), timeout=2.0) == b"ping", h.name
        assert echo_once(h.address(7000), timeout=2.0) == b"ping", h.name


def dump(name, schedule):
    with open(os.path.join(os.getcwd(), name + ".json"), "w") as f:
        json.dump({
            "seed": schedule.seed,
            "steps": [[s.at, s.kind, list(s.targets), s.hold] for s in schedule.steps],
            "events": [[e.kind, list(e.targets), e.due, e.late_ms] for e in schedule.events],
            "text": [str(e) for e in schedule.events],
        }, f)
"""

TESTS = """
def test_rolling_fire(dcfire, dcfire_topology):
    t = dcfire_topology
    east, west = t.service("echo@east"), t.service("echo@west")
    steps = [(0.0, "fire", "east", {"for": 3.0}), (4.0, "fire", "west", {"for": 3.0})]
    with dcfire.workload(lambda n: echo_once(east.address(7000), timeout=0.5)) as w:
        with dcfire.schedule(steps, quiet=0.5) as s:
            samples = probe_until([east, west], 8.0)
    fires = {e.targets[0]: e for e in s.events}
    assert sorted(fires) == ["east", "west"], s.events
    t0 = s.started
    for site, other in (("east", "west"), ("west", "east")):
        e = fires[site]
        assert e.applied is not None and e.lifted is not None, str(e)
        on, off = t0 + e.applied, t0 + e.lifted
        inside = [d for a, b, d in samples["echo@" + site] if a >= on and b <= off]
        assert len(inside) >= 2 and all(inside), (site, str(e), inside)
        # the other site answered during this window (allow a probe at the edges)
        theirs = [d for a, b, d in samples["echo@" + other] if a >= on + 0.3 and b <= off - 0.3]
        assert theirs and not any(theirs), (other, str(e), theirs)
        assert str(e).startswith(f"fire {site}: applied at "), str(e)
        assert ", lifted at " in str(e)
    all_answer(t)
    marks = [(m.name, m.label) for m in w.history.marks]
    assert marks == [
        ("ignite", "east [fire]"), ("burning", "east [fire]"), ("restore", "east [fire]"),
        ("ignite", "west [fire]"), ("burning", "west [fire]"), ("restore", "west [fire]"),
    ], marks
    assert dcfire.burning == ()


def test_seeded_chaos(dcfire, dcfire_topology):
    with dcfire.chaos(
        faults=["fire", "power-loss", "freeze", "partition", "brownout"],
        seed=20261203, duration=8, interval=(1.0, 2.0), max_at_once=2, quiet=0.5,
    ) as c:
        c.wait()
    dump("seeded", c)
    assert len(c.events) >= 3
    assert all(e.applied is not None and e.lifted is not None for e in c.events), c.events
    assert dcfire.burning == () and all(not f.active for f in dcfire.link_faults)
    all_answer(dcfire_topology)


def test_stop_lifts_everything(dcfire, dcfire_topology):
    c = dcfire.chaos(faults=["fire", "brownout"], seed=1, duration=60, interval=0.5,
                     hold=(30, 30), max_at_once=2, quiet=0)
    dcfire.eventually(lambda: len(c.active) == 2, timeout=20)
    assert dcfire.burning == ("east",) and len(dcfire.brownouts) == 1  # seed 1 draws these
    c.stop()
    assert not c.running and c.active == []
    assert dcfire.burning == () and all(not f.active for f in dcfire.link_faults)
    all_answer(dcfire_topology)  # at once: stop() waited for the health checks


def test_failing_test_with_chaos_still_burning(dcfire):
    c = dcfire.chaos(faults="fire", seed=77, duration=60, interval=1, hold=(60, 60), quiet=0)
    dcfire.eventually(lambda: dcfire.burning != (), timeout=20)
    assert False, "the system under test broke"


def test_the_site_answers_after_the_failing_test(dcfire_topology):
    all_answer(dcfire_topology)
"""


def test_schedules_and_chaos_burn_for_real_and_replay(pytester: pytest.Pytester) -> None:
    tests = ECHO_HELPERS + HELPERS + textwrap.dedent(TESTS)
    first = run_inner(pytester, TOPOLOGY, tests, "--dcfire-report", "report.html", "-rA")
    out = first.stdout.str()
    first.assert_outcomes(passed=4, failed=1)
    # the seed in the failing test's failure message, and in the passing one's section
    failure = out.split("_ test_failing_test_with_chaos_still_burning _", 1)[1]
    assert "AssertionError: the system under test broke" in failure
    assert "dcfire.chaos seed 77: replay with --dcfire-seed 77" in failure
    assert "dcfire.chaos seed 20261203: replay with --dcfire-seed 20261203" in out
    # the rolling fire's events are rows of the fire table, like any fire
    table = out.split("dcfire: fires", 1)[1]
    assert "test_rolling_fire" in table and "east [fire]" in table and "west [fire]" in table
    assert "test_failing_test_with_chaos_still_burning" in table
    assert "chaos seed <b>20261203</b>" in (pytester.path / "report.html").read_text()
    seeded = json.loads((pytester.path / "seeded.json").read_text())
    assert seeded["seed"] == 20261203

    # The same seed in a second session: the same kinds, targets and times.
    again = run_inner(pytester, TOPOLOGY, tests, "-k", "test_seeded_chaos")
    again.assert_outcomes(passed=1)
    replay = json.loads((pytester.path / "seeded.json").read_text())
    assert replay["steps"] == seeded["steps"]
    assert [e[:3] for e in replay["events"]] == [e[:3] for e in seeded["events"]]
    assert {e[0] for e in seeded["events"]} >= {"fire"}, seeded["text"]
