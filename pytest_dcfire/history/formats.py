"""Readers for histories written by other tools: Jepsen's text log and EDN op maps.

They let the checkers be tested against real runs whose verdicts someone else established
(the shared data set), and let users check histories their own Jepsen tests produced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_dcfire.history.history import History
from pytest_dcfire.history.model import READ_FS, HistoryError, Op, OpType, Value, freeze

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------------------
# A small EDN reader: nil, booleans, numbers, strings, keywords, symbols, vectors, lists,
# maps and sets; enough for Jepsen's op maps.
# ---------------------------------------------------------------------------------------


class Keyword(str):
    """An EDN keyword (`:ok`), kept apart from strings ("ok")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return ":" + str(self)


_TOKEN = re.compile(
    r"""[\s,]*(?:
        (?P<open>[\[\{(]|\#\{) |
        (?P<close>[\]\})]) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<atom>[^\s,\[\]\{\}()"]+)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?")


class EdnError(HistoryError):
    """Text that the EDN reader does not understand."""


def _atom(text: str) -> Any:
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if text.startswith(":"):
        return Keyword(text[1:])
    if _INT.fullmatch(text):
        return int(text.rstrip("N"))
    if _FLOAT.fullmatch(text):
        return float(text.rstrip("M"))
    return Keyword(text)  # a symbol; rare in op maps


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def read_edn(text: str) -> Any:
    """Read one EDN value (commas are whitespace; `#{}` sets become tuples)."""
    stack: list[tuple[str, list[Any]]] = []
    result: list[Any] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise EdnError(f"cannot read EDN at {pos}: {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.group("open"):
            stack.append((m.group("open"), []))
            continue
        if m.group("close"):
            if not stack:
                raise EdnError(f"unbalanced {m.group('close')!r} at {pos}")
            opener, items = stack.pop()
            if opener == "{":
                if len(items) % 2:
                    raise EdnError("a map needs an even number of forms")
                value: Any = dict(zip(items[0::2], items[1::2], strict=True))
            else:
                value = tuple(items)
        elif m.group("string") is not None:
            value = _unescape(m.group("string")[1:-1])
        else:
            value = _atom(m.group("atom"))
        (stack[-1][1] if stack else result).append(value)
    if stack or len(result) != 1:
        raise EdnError(
            f"expected one complete EDN value, got {len(result)} (unclosed: {len(stack)})"
        )
    return result[0]


def _plain(value: Any) -> Value:
    """EDN to our values: keywords become their names, mappings get string keys."""
    if isinstance(value, Keyword):
        return str(value)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return freeze(value)


# ---------------------------------------------------------------------------------------
# Pairing invocations with completions (Jepsen: one outstanding op per process)
# ---------------------------------------------------------------------------------------

_TIMED_OUT = "timed-out"


class _Pairer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.open: dict[Any, tuple[int, int, str, Value, Value]] = {}
        self.history = History()
        self.count = 0

    def invoke(self, where: int, process: Any, f: str, key: Value, value: Value) -> None:
        if process in self.open:
            raise HistoryError(
                f"{self.source}:{where}: process {process} invokes {f} while its operation "
                f"from line {self.open[process][0]} is still open"
            )
        self.open[process] = (where, self.count, f, key, value)
        self.count += 1

    def complete(
        self, where: int, process: Any, kind: str, value: Value, *, fail_is_unknown: bool
    ) -> None:
        try:
            line, op_id, f, key, invoked = self.open.pop(process)
        except KeyError:
            raise HistoryError(
                f"{self.source}:{where}: process {process} completes an operation it never invoked"
            ) from None
        op_type: OpType
        error = None
        result: Value = None
        if kind == "ok":
            op_type = "ok"
            if f in READ_FS or f == "txn":
                result = value  # a transaction's completion holds what its reads saw
            elif f == "cas":
                result = True
        elif kind == "fail":
            op_type = "fail"
            if value == _TIMED_OUT:
                op_type, error = "info", _TIMED_OUT
            elif fail_is_unknown:
                op_type = "info"
        elif kind == "info":
            op_type = "info"
            error = str(value) if value is not None else None
        else:
            raise HistoryError(f"{self.source}:{where}: unknown completion type {kind!r}")
        self.history.append(
            Op(
                f=f,
                value=None if f in READ_FS else invoked,
                type=op_type,
                invoke=float(line),
                complete=None if op_type == "info" else float(where),
                key=key,
                result=result,
                process=process,
                id=op_id,
                error=error,
            )
        )

    def finish(self) -> History:
        for process, (line, op_id, f, key, invoked) in self.open.items():
            self.history.append(
                Op(
                    f=f,
                    value=None if f in READ_FS else invoked,
                    type="info",
                    invoke=float(line),
                    key=key,
                    process=process,
                    id=op_id,
                    error="never completed",
                )
            )
        self.open.clear()
        return self.history


# ---------------------------------------------------------------------------------------
# Jepsen's text log (jepsen.util lines)
# ---------------------------------------------------------------------------------------

_LOG_LINE = re.compile(
    r"jepsen\.util\s+-\s+(?P<process>\S+)\s+:(?P<type>\w+)\s+:(?P<f>\S+)\s*(?P<value>.*)$"
)


def load_jepsen_log(path: PathLike) -> History:
    """Read the operation lines of a Jepsen log (`INFO jepsen.util - 3 :ok :read 4`).

    Times are line numbers. `:info` and a `:fail` with `:timed-out` are indeterminate (info,
    never returned); other `:fail`s did not happen. A read's value is its result; a cas's
    value `[expected new]` becomes a tuple. Lines of other loggers are ignored.
    """
    source = os.fspath(path)
    pairer = _Pairer(source)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            m = _LOG_LINE.search(line)
            if m is None:
                continue
            raw = m.group("value").strip()
            try:
                value = _plain(read_edn(raw)) if raw else None
            except EdnError as exc:
                raise HistoryError(f"{source}:{number}: {exc}") from None
            process = _process(m.group("process"))
            kind = m.group("type")
            if kind == "invoke":
                pairer.invoke(number, process, m.group("f"), None, value)
            else:
                pairer.complete(number, process, kind, value, fail_is_unknown=False)
    return pairer.finish()


def _process(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


# ---------------------------------------------------------------------------------------
# EDN op maps, one a line ({:process 0, :type :invoke, :f :append, :key "0", :value "x"})
# ---------------------------------------------------------------------------------------


def load_edn_ops(path: PathLike) -> History:
    """Read a history of EDN op maps, one a line (`:process`, `:type`, `:f`, `:key`,
    `:value`, optional `:time` in nanoseconds). Times are line numbers unless given."""
    source = os.fspath(path)
    pairer = _Pairer(source)
    with open(path, encoding="utf-8") as fh:
        lines = list(fh)
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        try:
            row = read_edn(line)
        except EdnError as exc:
            raise HistoryError(f"{source}:{number}: {exc}") from None
        if not isinstance(row, dict):
            raise HistoryError(f"{source}:{number}: expected an op map, got {line.strip()[:60]}")
        try:
            kind = str(row[Keyword("type")])
            process = _plain(row[Keyword("process")])
            f = str(row[Keyword("f")])
        except KeyError as exc:
            raise HistoryError(f"{source}:{number}: an op map needs {exc.args[0]!r}") from None
        key = _plain(row.get(Keyword("key")))
        value = _plain(row.get(Keyword("value")))
        proc: Any = process if isinstance(process, (int, str)) else repr(process)
        if kind == "invoke":
            pairer.invoke(number, proc, f, key, value)
        else:
            pairer.complete(number, proc, kind, value, fail_is_unknown=False)
    return pairer.finish()


# ---------------------------------------------------------------------------------------
# The shared data set
# ---------------------------------------------------------------------------------------


def load_verdicts(path: PathLike) -> dict[str, bool]:
    """`VERDICTS.tsv`: file name, tab, `linearizable` or `not-linearizable`."""
    verdicts: dict[str, bool] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, _, verdict = line.partition("\t")
        if verdict.strip() not in ("linearizable", "not-linearizable"):
            raise HistoryError(
                f"{path}:{number}: verdict must be linearizable or not-linearizable, "
                f"got {verdict.strip()!r}"
            )
        verdicts[name.strip()] = verdict.strip() == "linearizable"
    return verdicts


def load(path: PathLike) -> History:
    """Read a history by its file name: `.jsonl` (ours), `.log` (Jepsen's text log), other
    text (EDN op maps)."""
    suffix = Path(path).suffix
    if suffix == ".jsonl":
        return History.from_jsonl(path)
    if suffix == ".log":
        return load_jepsen_log(path)
    return load_edn_ops(path)


def shared_histories(root: PathLike) -> Iterable[tuple[Path, str, bool]]:
    """(path, model, linearizable?) for every history of the shared data set under `root`:
    `etcd/` (a cas register starting absent) and `kv/` (get/put/append; `-ok` files are
    linearizable, `-bad` ones are not)."""
    base = Path(root)
    etcd = base / "etcd"
    if (etcd / "VERDICTS.tsv").exists():
        for name, verdict in sorted(load_verdicts(etcd / "VERDICTS.tsv").items()):
            yield etcd / name, "register", verdict
    kv = base / "kv"
    if kv.is_dir():
        verdicts = load_verdicts(kv / "VERDICTS.tsv") if (kv / "VERDICTS.tsv").exists() else {}
        for path in sorted(kv.glob("*.txt")):
            verdict = verdicts.get(path.name, path.stem.endswith("-ok"))
            yield path, "kv", verdict
