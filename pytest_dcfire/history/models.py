"""Sequential specifications (register, key-value, counter) for the linearizability checker.

A model turns each operation into a step function `state -> possible next states` once, so
the search loop only calls small closures; `ANY` stands for "some state we do not know",
which lets the checker test a window of a history on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol, TypeGuard

from pytest_dcfire.history.model import READ_FS, HistoryError, Op, Value, hashable

#: A model state; it must be hashable (it is half of the search's memo key).
State = Any
#: What an operation does to a state: the states it may lead to (none: not possible here).
Step = Callable[[State], tuple[State, ...]]
#: How an operation touches the state (see `Model.effect`).
Effect = Literal["reads", "writes", "updates"]


class _Any:
    """The unknown state: every concrete state is possible."""

    _instance: _Any | None = None

    def __new__(cls) -> _Any:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<any state>"

    def __reduce__(self) -> str:
        return "ANY"


ANY: Any = _Any()

WRITE_FS = frozenset({"write", "put"})
CAS_FS = frozenset({"cas"})
APPEND_FS = frozenset({"append"})
ADD_FS = frozenset({"add", "increment"})


class Model(Protocol):
    """What the checker needs from a sequential specification."""

    name: str

    def initial(self) -> State:
        """The state before the first operation."""
        ...

    def step(self, op: Op) -> Step | None:
        """The step function of `op` (ok or info; fail operations never get here), or None
        when the operation neither changes the state nor constrains it (an info read)."""
        ...

    def effect(self, op: Op) -> Effect:
        """What `op` does to a state, for the search's shortcuts: "reads" (whenever possible,
        it leaves the state as it was: a read), "writes" (always possible, and the state after
        does not depend on the one before: a blind write) or "updates" (anything else; always
        a safe answer)."""
        ...

    def sensitive(self, op: Op) -> tuple[State, ...] | None:
        """The states in which `op` behaves unlike in all others (a read of 3 is possible
        only in state 3; a cas from 1 does something only in state 1; a blind write behaves
        the same everywhere: ()), or None when there is no such list (an add; always a safe
        answer). It lets the search find fast which operations may see another's effect."""
        ...

    def prune(self, ops: list[Op]) -> list[Op]:
        """The operations of one partition without info operations whose effect no other
        operation could ever observe (they may simply not have happened); at least, `ops`."""
        ...

    def partition(self, ops: Sequence[Op]) -> list[tuple[Value, list[Op]]]:
        """Independent sub-histories (P-compositionality), each with a label."""
        ...

    def show(self, state: State) -> str:
        """A state, for a person."""
        ...


def _unknown(model: str, op: Op, valid: Iterable[str]) -> HistoryError:
    return HistoryError(
        f"the {model} model does not know operation {op.f!r} (#{op.id}); "
        f"valid: {', '.join(sorted(valid))}"
    )


def _read(op: Op) -> Step | None:
    if op.type != "ok":
        return None  # a read with an unknown outcome neither changes nor constrains anything
    seen = hashable(op.result)

    def read(s: State) -> tuple[State, ...]:
        if s == seen:
            return (s,)
        return (seen,) if s is ANY else ()

    return read


def _cas_pair(op: Op) -> tuple[Any, Any]:
    value = op.value
    if not isinstance(value, tuple) or len(value) != 2:
        raise HistoryError(f"operation #{op.id}: a cas needs value (expected, new), got {value!r}")
    return hashable(value[0]), hashable(value[1])


def _cas(op: Op) -> Step:
    expected, new = _cas_pair(op)
    to_new = (new,)
    if op.type == "info":
        # It may have happened: then it swapped if the compare held, else changed nothing.
        # (That it did not happen at all is covered by linearizing it after everything.)
        maybe = (new, ANY)

        def cas_info(s: State) -> tuple[State, ...]:
            if s is ANY:
                return maybe
            return to_new if s == expected else (s,)

        return cas_info
    if op.result is False:
        # The compare failed: the state was not `expected` at that moment; nothing changed.
        def cas_failed(s: State) -> tuple[State, ...]:
            return (s,) if s != expected else ()

        return cas_failed

    def cas_ok(s: State) -> tuple[State, ...]:
        return to_new if (s == expected or s is ANY) else ()

    return cas_ok


class Register:
    """One register: `read` (result: the value), `write` (value), `cas` (value
    `(expected, new)`; an ok result of False means the compare failed). `get`/`put` are
    accepted as `read`/`write`. Keys are ignored."""

    name = "register"
    ops = READ_FS | WRITE_FS | CAS_FS

    def __init__(self, initial: Value = None) -> None:
        self._initial = hashable(initial)

    def initial(self) -> State:
        return self._initial

    def step(self, op: Op) -> Step | None:
        if op.f in READ_FS:
            return _read(op)
        if op.f in WRITE_FS:
            to_value = (hashable(op.value),)
            return lambda s: to_value
        if op.f in CAS_FS:
            return _cas(op)
        raise _unknown(self.name, op, self.ops)

    def effect(self, op: Op) -> Effect:
        if op.f in READ_FS or (op.f in CAS_FS and op.type == "ok" and op.result is False):
            return "reads"
        return "writes" if op.f in WRITE_FS else "updates"

    def sensitive(self, op: Op) -> tuple[State, ...] | None:
        if op.f in READ_FS:
            return (hashable(op.result),)
        if op.f in WRITE_FS:
            return ()
        if op.f in CAS_FS:
            return (_cas_pair(op)[0],)
        return None

    def prune(self, ops: list[Op]) -> list[Op]:
        """Drop info writes and info cas whose value no read returned and no cas expects:
        had one taken effect, nobody could have seen it until the next write (a read would
        return it, a cas would need it), so a linearization without it works as well. (Not
        when a cas failed its compare: that sees any change.)"""
        seen: set[Any] = set()
        for op in ops:
            if op.f in CAS_FS:
                if op.type == "ok" and op.result is False:
                    return ops
                seen.add(_cas_pair(op)[0])
            elif op.f in READ_FS and op.type == "ok":
                seen.add(hashable(op.result))

        def unseen(op: Op) -> bool:
            if op.type != "info":
                return False
            if op.f in WRITE_FS:
                return hashable(op.value) not in seen
            return op.f in CAS_FS and _cas_pair(op)[1] not in seen

        return [op for op in ops if not unseen(op)]

    def partition(self, ops: Sequence[Op]) -> list[tuple[Value, list[Op]]]:
        return [(None, list(ops))]

    def show(self, state: State) -> str:
        return repr(state)

    # Optional hooks of a model (the search prunes with them; see `_reaching`): `resets(op)`,
    # the states `op` may set whatever the state before; `grows(state, target)`, whether
    # operations that reset nothing (here: none but reads; in `KeyValue`: appends) could
    # turn `state` into `target`.

    def resets(self, op: Op) -> tuple[State, ...]:
        if op.f in WRITE_FS:
            return (hashable(op.value),)
        if op.f in CAS_FS and (op.type == "info" or op.result is not False):
            return (_cas_pair(op)[1],)
        return ()

    def grows(self, state: State, target: State) -> bool:
        return state == target or state is ANY


class KeyValue(Register):
    """A map of independent registers, checked key by key: `read`/`get`, `write`/`put`,
    `cas`, and `append` (string or tuple concatenation; a missing key counts as empty).
    A missing key holds `initial` (None; the kv histories of the shared data use "")."""

    name = "kv"
    ops = Register.ops | APPEND_FS

    def step(self, op: Op) -> Step | None:
        if op.f in APPEND_FS:
            suffix = hashable(op.value)

            def append(s: State) -> tuple[State, ...]:
                if s is ANY:
                    return (ANY,)
                if s is None:
                    return (suffix,)
                try:
                    return (s + suffix,)
                except TypeError:
                    return ()

            return append
        return super().step(op)

    def grows(self, state: State, target: State) -> bool:
        if state is ANY or state == target or state is None:
            return True
        if isinstance(state, str) and isinstance(target, str):
            return target.startswith(state)
        if isinstance(state, tuple) and isinstance(target, tuple):
            return target[: len(state)] == state
        return False

    def prune(self, ops: list[Op]) -> list[Op]:
        """Drop info writes and appends of a string that no read result and no cas's
        expected value contains: while their text is in the value nobody can see it, and a
        write ends that. (Not when a cas failed its compare: that sees any change.)"""
        seen: list[str] = []
        for op in ops:
            if op.f in CAS_FS:
                if op.type == "ok" and op.result is False:
                    return ops
                if isinstance(op.value, tuple) and op.value:
                    seen.append(str(op.value[0]))
            elif op.f in READ_FS and op.type == "ok":
                seen.append(str(op.result))
        text = "\x00".join(seen)

        def visible(op: Op) -> bool:
            if op.type != "info" or op.f not in WRITE_FS | APPEND_FS:
                return True
            return not isinstance(op.value, str) or op.value in text

        return [op for op in ops if visible(op)]

    def partition(self, ops: Sequence[Op]) -> list[tuple[Value, list[Op]]]:
        groups: dict[Any, tuple[Value, list[Op]]] = {}
        for op in ops:
            groups.setdefault(hashable(op.key), (op.key, []))[1].append(op)
        return list(groups.values())


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Counter:
    """A counter: `add`/`increment` (value: the delta, default 1) and `read` (result: the
    count). Starts at `initial` (0)."""

    name = "counter"
    ops = READ_FS | ADD_FS

    def __init__(self, initial: Value = 0) -> None:
        self._initial = initial

    def initial(self) -> State:
        return self._initial

    def step(self, op: Op) -> Step | None:
        if op.f in READ_FS:
            if op.type == "ok" and not _number(op.result):
                return lambda s: ()  # a counter never holds anything else
            return _read(op)
        if op.f in ADD_FS:
            delta = 1 if op.value is None else op.value
            if not _number(delta):
                raise HistoryError(f"operation #{op.id}: add needs a number, got {delta!r}")

            def add(s: State) -> tuple[State, ...]:
                return (ANY,) if s is ANY else (s + delta,)

            return add
        raise _unknown(self.name, op, self.ops)

    def effect(self, op: Op) -> Effect:
        return "reads" if op.f in READ_FS else "updates"

    def sensitive(self, op: Op) -> tuple[State, ...] | None:
        return (hashable(op.result),) if op.f in READ_FS else None

    def resets(self, op: Op) -> tuple[State, ...]:
        """Adds only grow the count; one that takes away may lead anywhere (see `Register`)."""
        if op.f in ADD_FS and _number(op.value) and op.value < 0:
            return (ANY,)
        return ()

    def grows(self, state: State, target: State) -> bool:
        return state is ANY or not (_number(state) and _number(target)) or state <= target

    def commutes(self, op: Op) -> bool:
        """Whether `op` is possible in every state and gives the same states in any order
        with every other operation that is not a read: adds do (a count is a sum). An
        optional hook: with it the search moves indeterminate adds to just before the read
        that sees them (see `linearizability._searching`)."""
        return op.f in ADD_FS

    def prune(self, ops: list[Op]) -> list[Op]:
        return ops

    def partition(self, ops: Sequence[Op]) -> list[tuple[Value, list[Op]]]:
        return [(None, list(ops))]

    def show(self, state: State) -> str:
        return repr(state)


MODELS: dict[str, Callable[..., Model]] = {
    "register": Register,
    "kv": KeyValue,
    "counter": Counter,
}


def resolve(model: str | Model, initial: Any = ...) -> Model:
    """A model by name (`register`, `kv`, `counter`), optionally with its initial state."""
    if not isinstance(model, str):
        return model
    try:
        factory = MODELS[model]
    except KeyError:
        raise HistoryError(f"unknown model {model!r}; valid: {', '.join(sorted(MODELS))}") from None
    return factory() if initial is ... else factory(initial)
