"""Readers for Jepsen's text log and EDN op maps, on small files written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dcfire.history import HistoryError, load, load_edn_ops, load_jepsen_log
from pytest_dcfire.history.formats import EdnError, Keyword, load_verdicts, read_edn

JEPSEN = """\
2017-01-01 INFO  jepsen.core - Worker 0 starting
INFO  jepsen.util - 0\t:invoke\t:write\t3
INFO  jepsen.util - 1\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:ok\t:read\tnil
INFO  jepsen.util - 0\t:ok\t:write\t3
INFO  jepsen.util - 2   :invoke :cas    [3 4]
INFO  jepsen.util - 2   :fail   :cas    [3 4]
INFO  jepsen.util - 1\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:fail\t:read\t:timed-out
INFO  jepsen.util - 0\t:invoke\t:cas\t[3 1]
INFO  jepsen.util - 0\t:info\t:cas\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:write\t2
"""


def test_jepsen_log(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_text(JEPSEN)
    ops = load_jepsen_log(path).ops
    described = [(o.id, o.f, o.value, o.type, o.result, o.invoke, o.complete, o.error) for o in ops]
    assert described == [
        (0, "write", 3, "ok", None, 2.0, 5.0, None),
        (1, "read", None, "ok", None, 3.0, 4.0, None),
        (2, "cas", (3, 4), "fail", None, 6.0, 7.0, None),
        (3, "read", None, "info", None, 8.0, None, "timed-out"),
        (4, "cas", (3, 1), "info", None, 10.0, None, "timed-out"),
        (5, "write", 2, "info", None, 12.0, None, "never completed"),
    ]
    assert [o.process for o in ops] == [0, 1, 2, 1, 0, 3]
    assert load(path).ops == ops


def test_jepsen_log_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:invoke\t:write\t2\n"
    )
    with pytest.raises(
        HistoryError,
        match=r"bad.log:2: process 0 invokes write while its operation from line 1 is still open",
    ):
        load_jepsen_log(path)
    path.write_text("INFO  jepsen.util - 0\t:ok\t:write\t1\n")
    with pytest.raises(
        HistoryError, match=r"bad.log:1: process 0 completes an operation it never invoked"
    ):
        load_jepsen_log(path)
    path.write_text("INFO  jepsen.util - 0\t:invoke\t:write\t[1 2\n")
    with pytest.raises(HistoryError, match=r"bad.log:1: expected one complete EDN value"):
        load_jepsen_log(path)


EDN = """\
{:process 0, :type :invoke, :f :put, :key "a", :value "x"}
{:process 1, :type :invoke, :f :get, :key "a", :value nil}
{:process 0, :type :ok, :f :put, :key "a", :value "x"}
{:process 1, :type :ok, :f :get, :key "a", :value "x \\"quoted\\""}
; a comment

{:process :nemesis, :type :invoke, :f :append, :key "b", :value "y"}
"""


def test_edn_op_maps(tmp_path: Path) -> None:
    path = tmp_path / "kv.txt"
    path.write_text(EDN)
    ops = load_edn_ops(path).ops
    assert [(o.f, o.key, o.value, o.type, o.result, o.process) for o in ops] == [
        ("put", "a", "x", "ok", None, 0),
        ("get", "a", None, "ok", 'x "quoted"', 1),
        ("append", "b", "y", "info", None, "nemesis"),
    ]
    assert load(path).ops == ops


def test_edn_errors(tmp_path: Path) -> None:
    path = tmp_path / "kv.txt"
    path.write_text("{:process 0, :type :invoke}\n")
    with pytest.raises(HistoryError, match=r"kv.txt:1: an op map needs :f"):
        load_edn_ops(path)
    path.write_text("[1 2]\n")
    with pytest.raises(HistoryError, match=r"kv.txt:1: expected an op map"):
        load_edn_ops(path)


def test_read_edn() -> None:
    assert read_edn('{:a [1 -2 3.5 nil true false "s\\n"], :b #{:x}}') == {
        Keyword("a"): (1, -2, 3.5, None, True, False, "s\n"),
        Keyword("b"): (Keyword("x"),),
    }
    assert repr(read_edn(":ok")) == ":ok" and read_edn("7N") == 7
    for bad, message in [("[1 2", "unclosed"), ("]", "unbalanced"), ("{:a}", "even number")]:
        with pytest.raises(EdnError, match=message):
            read_edn(bad)


def test_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "VERDICTS.tsv"
    path.write_text("a.log\tlinearizable\nb.log\tnot-linearizable\n\n")
    assert load_verdicts(path) == {"a.log": True, "b.log": False}
    path.write_text("a.log\tfine\n")
    with pytest.raises(
        HistoryError,
        match=r"VERDICTS\.tsv:1: verdict must be linearizable or not-linearizable, got 'fine'",
    ):
        load_verdicts(path)
