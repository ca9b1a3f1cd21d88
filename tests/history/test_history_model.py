"""Op, Mark and History: validation, ordering, and the JSON-lines round trip."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_dcfire.history import History, HistoryError, Mark, Op
from pytest_dcfire.history.model import OP_TYPES, Value, freeze


def test_an_op_needs_a_completion_unless_it_is_info() -> None:
    with pytest.raises(HistoryError, match="an ok operation needs its completion time"):
        Op("write", 1, invoke=0.0)
    assert Op("write", 1, type="info", invoke=0.0).complete is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"f": ""}, "an operation needs a name"),
        ({"type": "done"}, "type must be one of ok, fail, info, got 'done'"),
        ({"invoke": 2.0, "complete": 1.0}, "completes at 1.0 before it was invoked at 2.0"),
        ({"invoke": math.inf}, "times must be finite"),
        ({"complete": math.nan}, "times must be finite"),
    ],
)
def test_malformed_ops_are_refused_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"f": "write", "invoke": 0.0, "complete": 1.0, **kwargs}
    with pytest.raises(HistoryError, match=message):
        Op(**fields)  # type: ignore[arg-type]


def test_times_are_floats_and_describe_is_readable() -> None:
    op = Op("read", None, invoke=1, complete=2, result=5, process="p1", id=7)
    assert op.invoke == 1.0 and isinstance(op.invoke, float) and op.duration == 1.0
    assert op.describe(origin=1.0) == "[0.000 .. 1.000] #7 process p1: read -> 5  ok"
    timeout = Op("write", 3, type="info", invoke=1, key="k", error="TimeoutError")
    assert timeout.describe() == "[1.000 .. ...] #-1 process 0: write 'k' 3  info (TimeoutError)"


def test_history_orders_by_invocation_and_assigns_ids() -> None:
    history = History()
    late = history.append(Op("write", 2, invoke=5, complete=6))
    early = history.append(Op("write", 1, invoke=1, complete=9))
    explicit = history.append(Op("write", 3, invoke=3, complete=4, id=10))
    auto = history.append(Op("write", 4, invoke=7, complete=8))
    assert (late.id, early.id, explicit.id, auto.id) == (0, 1, 10, 11)
    assert [op.value for op in history.ops] == [1, 3, 2, 4]
    assert len(history) == 4 and [op.value for op in history] == [1, 3, 2, 4]
    assert repr(history) == "<History 4 ops (4 ok, 0 fail, 0 info), 0 marks>"


def test_marks_and_origin() -> None:
    history = History([Op("write", 1, invoke=10, complete=11)])
    history.mark("restore", 14.0)
    history.mark("ignite", 12.0, "pangyo")
    assert history.marks == (Mark("ignite", 12.0, "pangyo"), Mark("restore", 14.0))
    assert history.marks_named("ignite") == (Mark("ignite", 12.0, "pangyo"),)
    assert history.origin == 10.0
    now = history.mark("checkpoint")
    assert now.time > 0


def test_freeze_makes_values_recordable() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert freeze([1, [2, 3]]) == (1, (2, 3))
    assert freeze({1: [True]}) == {"1": (True,)}
    assert freeze({3, 1, 2}) == (1, 2, 3)
    assert freeze(b"ok") == "ok"
    assert freeze(b"\xff") == "b'\\xff'"
    assert freeze(Thing()) == "<thing>"


def sample() -> History:
    history = History(
        [
            Op("write", 1, invoke=0.5, complete=0.75, process=0, id=1, result="OK"),
            Op("read", None, invoke=0.6, complete=0.9, key="k", result=(1, (2, None)), id=2),
            Op("cas", (1, 2), type="fail", invoke=0.7, complete=0.8, id=3, error="E: x"),
            Op("write", {"a": (1,)}, type="info", invoke=0.8, process="p", id=4),
            Op("add", 0.1, type="info", invoke=0.85, complete=1.5, id=5, error="TimeoutError"),
        ]
    )
    history.mark("ignite", 0.7, "pangyo")
    history.mark("restore", 1.2)
    return history


def test_jsonl_is_time_ordered_invoke_and_completion_lines() -> None:
    lines = [json.loads(line) for line in sample().dumps_jsonl().splitlines()]
    assert [(row["type"], row.get("id", row.get("name"))) for row in lines] == [
        ("invoke", 1),
        ("invoke", 2),
        ("invoke", 3),
        ("mark", "ignite"),
        ("ok", 1),
        ("invoke", 4),  # at equal times: invocations, then marks, then completions
        ("fail", 3),
        ("invoke", 5),
        ("ok", 2),
        ("mark", "restore"),
        ("info", 5),
        ("info", 4),  # never returned: time null, last
    ]
    assert lines[-1]["time"] is None
    assert lines[6]["error"] == "E: x"


def test_jsonl_round_trip_is_exact(tmp_path: Path) -> None:
    history = sample()
    assert History.loads_jsonl(history.dumps_jsonl()) == history
    path = tmp_path / "h.jsonl"
    history.to_jsonl(path)
    loaded = History.from_jsonl(path)
    assert loaded == history and loaded.ops == history.ops and loaded.marks == history.marks
    stream = io.StringIO()
    history.to_jsonl(stream)
    assert History.from_jsonl(io.StringIO(stream.getvalue())) == history


def test_an_invocation_without_completion_loads_as_info() -> None:
    text = '{"type": "invoke", "id": 3, "process": 1, "f": "write", "key": null, "value": 9, "time": 2.0}\n'
    (op,) = History.loads_jsonl(text).ops
    assert (op.type, op.complete, op.value, op.process) == ("info", None, 9, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope\n", r"<string>:1: not JSON"),
        ("[1]\n", r"<string>:1: expected a JSON object"),
        (
            '{"type": "ok", "id": 1, "time": 1}\n',
            "<string>:1: operation 1 completes before it is invoked",
        ),
        (
            '{"type": "invoke", "id": 1, "f": "w", "time": 1}\n' * 2,
            "<string>:2: operation id 1 is invoked twice",
        ),
        (
            '{"type": "invoke", "f": "w", "time": 1}\n',
            "<string>:1: a invoke line needs the field 'id'",
        ),
        (
            '{"type": "begin", "id": 1}\n',
            "<string>:1: type must be one of invoke, ok, fail, info, mark; got 'begin'",
        ),
        ('{"type": "invoke", "id": 1, "time": 1}\n', "<string>:1: operation 1 needs the field 'f'"),
        (
            '{"type": "invoke", "id": 1, "f": "w", "time": 2}\n{"type": "ok", "id": 1, "time": 1}\n',
            "<string>:1: operation 1: .*completes at 1.0 before it was invoked at 2.0",
        ),
    ],
)
def test_malformed_jsonl_names_the_line(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        History.loads_jsonl(text)


json_scalars = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
times = st.floats(0, 1e6, allow_nan=False)


@st.composite
def ops(draw: st.DrawFn, id: int) -> Op:
    outcome = draw(st.sampled_from(OP_TYPES))
    start = draw(times)
    end = None if outcome == "info" and draw(st.booleans()) else start + draw(times)
    value: Value = draw(json_values)
    return Op(
        draw(st.sampled_from(["read", "write", "cas", "add"])),
        value,
        type=outcome,
        invoke=start,
        complete=end,
        key=draw(json_values),
        result=draw(json_values),
        process=draw(st.integers(0, 5) | st.text(max_size=3)),
        id=id,
        error=draw(st.none() | st.text(max_size=10)),
    )


@settings(max_examples=100, deadline=None)
@given(data=st.data(), count=st.integers(0, 12))
def test_any_history_survives_the_round_trip(data: st.DataObject, count: int) -> None:
    history = History([data.draw(ops(k)) for k in range(count)])
    for name, when in data.draw(st.lists(st.tuples(st.text(max_size=5), times), max_size=3)):
        history.mark(name, when)
    assert History.loads_jsonl(history.dumps_jsonl()) == history
