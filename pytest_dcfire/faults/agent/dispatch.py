"""How a request reaches its handler, and the three ways it can fail (the answer's `kind`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .protocol import OPS, Op

Q = TypeVar("Q")
R = TypeVar("R")
S = TypeVar("S")
Handler = Callable[[Any], Any]
_OP_ATTR = "__dcfire_op__"


class Refused(Exception):
    """The request names something this agent must not touch."""


class Stale(Refused):
    """A target's pid is gone or belongs to another process: the client should inspect the
    container again (it was restarted) and retry."""


class Failed(Exception):
    """The request was valid but the kernel or a tool said no."""


def handles(op: Op[Q, R]) -> Callable[[Callable[[S, Q], R]], Callable[[S, Q], R]]:
    """Mark a method as the handler of `op`; mypy checks it takes `op`'s request and
    returns its reply."""

    def mark(fn: Callable[[S, Q], R]) -> Callable[[S, Q], R]:
        setattr(fn, _OP_ATTR, op.name)
        return fn

    return mark


def handlers(*parts: object) -> dict[str, Handler]:
    """The marked methods of `parts`, bound, by op name: exactly one for every op of the
    protocol, or the agent does not start."""
    found: dict[str, Handler] = {}
    for part in parts:
        for attr in dir(type(part)):
            name = getattr(getattr(type(part), attr), _OP_ATTR, None)
            if name is None:
                continue
            if name in found:
                raise RuntimeError(f"two handlers for {name!r}")
            found[name] = getattr(part, attr)
    missing = sorted(set(OPS) - set(found))
    unknown = sorted(set(found) - set(OPS))
    if missing or unknown:
        raise RuntimeError(f"ops without a handler: {missing}; handlers of no op: {unknown}")
    return found
