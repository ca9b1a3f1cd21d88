"""eventually() and measure_recovery(): real clocks, real retries, precise failure messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pytest_dcfire.errors import RecoveryTimeout
from pytest_dcfire.recovery import eventually, measure_recovery


def flaky(fail_times: int, exc: type[Exception] = ConnectionError) -> Callable[[], str]:
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise exc(f"attempt {calls['n']} failed")
        return "ok"

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_eventually_returns_the_value_once_it_works() -> None:
    fn = flaky(3)
    assert eventually(fn, timeout=5, interval=0.01) == "ok"
    assert fn.calls["n"] == 4  # type: ignore[attr-defined]


def test_eventually_treats_false_as_not_yet() -> None:
    answers = iter([False, False, 0, "done"])
    assert eventually(lambda: next(answers), timeout=5, interval=0.01) == 0


def test_eventually_failure_says_how_long_how_often_and_the_last_error() -> None:
    def never() -> None:
        raise ConnectionRefusedError("connection refused")

    started = time.monotonic()
    with pytest.raises(RecoveryTimeout) as info:
        eventually(never, timeout=0.3, interval=0.05)
    assert 0.3 <= time.monotonic() - started < 2
    message = str(info.value)
    assert message.startswith(
        "eventually(test_eventually_failure_says_how_long_how_often_and_the_last_error.<locals>.never) did not succeed within 0.3 s (waited 0."
    )
    assert "attempts); last error: ConnectionRefusedError: connection refused" in message
    assert isinstance(info.value, AssertionError)  # reported as a test failure


def test_measure_recovery_counts_from_ignition_to_the_first_stable_success() -> None:
    ignition = time.monotonic()
    recover_at = ignition + 0.3

    def probe() -> None:
        if time.monotonic() < recover_at:
            raise TimeoutError("still dark")

    recovery = measure_recovery(probe, since=ignition, timeout=5, stable=3, interval=0.02)
    assert 0.3 <= recovery.rto < 0.5
    assert recovery.failures >= 5
    assert recovery.attempts == recovery.failures + 3
    assert recovery.last_error == "TimeoutError: still dark"


def test_a_success_between_failures_does_not_count_as_recovered() -> None:
    pattern = iter([True, False, True, True, False, True, True, True])

    def probe() -> bool:
        return next(pattern)

    since = time.monotonic()
    recovery = measure_recovery(probe, since=since, timeout=5, stable=3, interval=0.01)
    assert recovery.attempts == 8
    assert recovery.failures == 2
    assert recovery.rto >= 0.05  # the streak started at the 6th probe, not the 1st


def test_measure_recovery_timeout_names_the_probe_and_stability() -> None:
    with pytest.raises(
        RecoveryTimeout,
        match=r"no recovery within 0.2 s: .*probe did not succeed 2 times in a row \(waited 0\.\d s, \d+ attempts, \d+ failed\); last error: OSError: down",
    ):

        def probe() -> None:
            raise OSError("down")

        measure_recovery(probe, since=time.monotonic(), timeout=0.2, stable=2, interval=0.02)


def test_stable_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stable must be at least 1"):
        measure_recovery(lambda: None, since=0, timeout=1, stable=0)


def test_a_probe_that_hangs_then_answers_recovered_when_it_answered() -> None:
    """The first probe after ignition blocks ~1 s and then succeeds, as a client does while
    a failover completes: the system answered after 1 s, so the RTO is at least 1 s (the
    instant `availability()` takes too), not the moment the probe was sent."""
    ignition = time.monotonic()
    calls = {"n": 0}

    def probe() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(1.0)
        return "ok"

    recovery = measure_recovery(probe, since=ignition, timeout=10, stable=3, interval=0.01)
    assert recovery.failures == 0
    assert 1.0 <= recovery.rto < 1.5


def test_a_probe_that_never_returns_cannot_outlast_the_timeout() -> None:
    """A client without a timeout on a blackholed site waits forever: `timeout` still bounds
    the wait, and the error says that the call hung and what to do."""
    never = threading.Event()

    def probe() -> None:
        never.wait(5)  # a socket with no timeout, on a site that burns (5 s: fails, not hangs)

    started = time.monotonic()
    try:
        with pytest.raises(RecoveryTimeout) as info:
            measure_recovery(probe, since=started, timeout=0.5, stable=1, interval=0.01)
        assert time.monotonic() - started < 2.0
        assert "the last call was still running after 0.5 s" in str(info.value)
        assert "needs a timeout of its own" in str(info.value)
        with pytest.raises(RecoveryTimeout, match=r"eventually\(.*probe\) did not succeed "):
            eventually(probe, timeout=0.3)
    finally:
        never.set()


def test_a_probe_failing_with_pytest_fail_still_stops_the_wait() -> None:
    def probe() -> None:
        pytest.fail("the probe gave up")

    with pytest.raises(pytest.fail.Exception, match="the probe gave up"):
        measure_recovery(probe, since=time.monotonic(), timeout=5, stable=1)
