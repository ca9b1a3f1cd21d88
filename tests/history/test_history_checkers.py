"""lost_writes and availability on hand-made histories with known answers."""

from __future__ import annotations

import pytest

from pytest_dcfire.history import History, Op, availability, lost_writes
from pytest_dcfire.history.model import Value


def w(value: Value, start: float, end: float | None, type: str = "ok", key: Value = None) -> Op:
    return Op("write", value, type=type, invoke=start, complete=end, key=key)  # type: ignore[arg-type]


def writes() -> History:
    return History(
        [
            w(1, 0.0, 0.1),
            w(2, 1.0, 1.1),
            w(3, 2.0, 2.5),  # acknowledged, will be lost
            w(4, 3.0, 3.2),  # acknowledged, will be lost
            w(5, 4.0, None, "info"),  # indeterminate, missing: maybe lost
            w(6, 5.0, 6.0, "info"),  # indeterminate, present: made it
            w(7, 6.0, 6.1, "fail"),  # failed, absent: fine
            w(8, 7.0, 7.1, "fail"),  # failed, yet present: revived
            Op("read", None, invoke=8, complete=9, result=(1, 2)),  # not a write
        ]
    )


def test_lost_maybe_lost_phantom_and_revived_writes() -> None:
    result = writes().lost_writes([1, 2, 6, 8, 99, 1])
    assert [op.value for op in result.lost] == [3, 4]
    assert [op.value for op in result.maybe_lost] == [5]
    assert [op.value for op in result.recovered] == [6]
    assert [op.value for op in result.revived] == [8]
    assert result.phantoms == (99,)
    assert result.duplicates == (1,)
    assert (result.acknowledged, result.indeterminate, result.present) == (4, 2, 6)
    assert result.ok is False
    assert result.rpo_window == (2.0, 3.2)
    assert result.rpo == pytest.approx(1.2)
    text = str(result)
    assert text.splitlines()[0] == (
        "writes lost or invented (4 acknowledged writes, 2 indeterminate, 6 values read back)"
    )
    assert (
        "LOST: 2 acknowledged writes: 3, 4 (written between t=2.000 and t=3.200 s: RPO 1.200 s)"
        in text
    )
    assert "PHANTOM: 1 values never written: 99" in text
    assert "REVIVED: 1 failed writes are present: 8" in text
    assert "maybe lost (indeterminate, allowed): 1: 5" in text
    assert "read back more than once: 1" in text


def test_nothing_lost() -> None:
    result = writes().lost_writes([1, 2, 3, 4, 6])
    assert result.ok and result.lost == () and result.rpo == 0.0 and result.rpo_window is None
    assert str(result).startswith("no acknowledged write lost (4 acknowledged writes")


def test_a_failed_write_of_a_value_another_attempt_wrote_is_not_revived() -> None:
    history = History([w(1, 0, 1, "fail"), w(1, 2, 3)])
    assert lost_writes(history, [1]).revived == ()


def test_values_are_compared_as_recorded() -> None:
    history = History([w((1, 2), 0, 1), w({"a": 1}, 1, 2), w([3], 2, 3)])  # type: ignore[arg-type]
    assert lost_writes(history, [[1, 2], {"a": 1}, (3,)]).ok


def test_writes_are_matched_by_key_when_present_is_a_mapping() -> None:
    history = History([w(1, 0, 1, key="a"), w(1, 0, 1, key="b"), w(2, 1, 2, key="b")])
    result = lost_writes(history, {"a": [1], "b": 2, "c": "x"})
    assert [(op.key, op.value) for op in result.lost] == [("b", 1)]
    assert result.phantoms == (("c", "x"),)


def test_which_operations_count_as_writes() -> None:
    history = History([Op("add", 5, invoke=0, complete=1), Op("insert", 6, invoke=0, complete=1)])
    assert [op.value for op in lost_writes(history, []).lost] == [5, 6]
    assert [op.value for op in lost_writes(history, [], writes=["insert"]).lost] == [6]


def attempt(start: float, end: float | None, type: str = "ok") -> Op:
    return Op("write", start, type=type, invoke=start, complete=end)  # type: ignore[arg-type]


def outage_history() -> History:
    ops = [attempt(t, t + 0.05) for t in (0.0, 0.5, 1.0)]
    ops += [attempt(1.5, 2.5, "info"), attempt(2.0, 2.1, "fail"), attempt(3.0, 3.1, "fail")]
    ops += [attempt(3.5, 3.6), attempt(4.0, 4.1, "fail")]  # one success, then a failure
    ops += [attempt(t, t + 0.05) for t in (4.5, 5.0, 5.5, 6.0)]
    history = History(ops)
    history.mark("ignite", 1.2, "pangyo")
    history.mark("restore", 3.3)
    return history


def test_operations_invoked_while_the_cut_was_applied_do_not_count_as_recovery() -> None:
    """A fire asked for at 1.0 is in place at 1.3: the calls invoked in between reached a
    site that was not dark yet and succeed; they must not make the RTO zero."""
    ops = [attempt(t, t + 0.05) for t in (0.0, 0.5, 1.05, 1.1, 1.15)]
    ops += [attempt(t, t + 0.05, "fail") for t in (1.4, 1.9, 2.4)]
    ops += [attempt(t, t + 0.05) for t in (3.0, 3.5, 4.0)]
    history = History(ops)
    history.mark("ignite", 1.0, "pangyo")
    assert availability(history).rto == pytest.approx(0.1)  # without the mark: fooled
    history.mark("burning", 1.3, "pangyo")
    result = availability(history)
    assert result.ignited == 1.0  # the RTO still runs from the request
    assert result.recovered_at == pytest.approx(3.05)
    assert result.rto == pytest.approx(2.05)


def test_a_burning_mark_of_an_earlier_fire_does_not_delay_recovery() -> None:
    ops = [attempt(t, t + 0.05) for t in (2.1, 2.2, 2.3)]
    history = History(ops)
    history.mark("ignite", 0.0)
    history.mark("burning", 0.1)
    history.mark("ignite", 2.0)  # the last ignition had no burning mark of its own
    assert availability(history).rto == pytest.approx(0.15)


def test_outages_rto_and_restore() -> None:
    result = outage_history().availability(stable=3)
    assert [(o.start, o.end, o.attempts, o.recovered) for o in result.outages] == [
        (1.5, 3.5, 3, True),
        (4.0, 4.5, 1, True),
    ]
    assert (result.attempts, result.succeeded, result.failed, result.indeterminate) == (
        12,
        8,
        3,
        1,
    )
    assert result.ignited == 1.2 and result.restored == 3.3
    # 3.5 succeeded but 4.0 failed: the first of 3 successes in a row completes at 4.55.
    assert result.recovered_at == pytest.approx(4.55)
    assert result.rto == pytest.approx(3.35)
    assert result.rto_after_restore == pytest.approx(1.25)
    assert result.rpo is None
    assert result.longest_outage is not None and result.longest_outage.duration == 2.0
    text = str(result)
    assert text.splitlines()[0] == "12 attempts: 8 ok, 3 failed, 1 indeterminate"
    assert (
        "RTO: 3.350 s (ignition at t=1.200, 3 consecutive successes from t=4.550, 1.250 s after the restore)"
        in text
    )
    assert "2 outages; longest 2.000 s from t=1.500 (3 failed attempts)" in text


def test_stable_one_recovers_at_the_first_success() -> None:
    result = availability(outage_history(), stable=1)
    assert result.recovered_at == pytest.approx(3.6)


def test_rpo_comes_from_the_final_read() -> None:
    history = outage_history()
    result = history.availability(present=[0.0, 0.5, 1.0, 4.5, 5.0, 5.5, 6.0])
    assert result.lost is not None and [op.value for op in result.lost.lost] == [3.5]
    assert result.rpo == pytest.approx(0.1)
    assert "RPO: 0.100 s (1 acknowledged writes lost)" in str(result)
    given = history.lost_writes([0.0])
    assert history.availability(lost=given).lost is given


def test_no_ignition_no_recovery_and_a_healthy_run() -> None:
    history = History([attempt(0, 1, "fail"), attempt(2, None, "info")])
    result = history.availability()
    assert result.rto is None and result.outages[0].recovered is False
    assert result.outages[0].end == 2.0
    assert "RTO: unknown (no ignition marked in the history)" in str(result)
    assert "never recovered" in str(result)
    history.mark("ignite", 0.5)
    assert "RTO: not recovered: no 3 consecutive successes after the ignition at t=0.500 s" in str(
        history.availability()
    )
    healthy = History([attempt(0, 1)])
    assert "no outage: no attempt failed" in str(healthy.availability())
    with pytest.raises(ValueError, match="stable must be at least 1"):
        healthy.availability(stable=0)
