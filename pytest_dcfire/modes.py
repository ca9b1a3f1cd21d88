"""The names a fire is made of, as Literal types: its modes, its effects, the kinds of disk
fault, where Toxiproxy runs and how xdist workers share the system; with `is_mode` to read
them from a marker or a file and `assert_never` to end an exhaustive match.

The bottom of the layering: it imports nothing of the package.
"""

from __future__ import annotations

from typing import Literal, NoReturn, TypeGuard, get_args

#: How a fire burns its sites (the `mode=` of `dc_fire` and `dcfire.fire`).
Mode = Literal["fire", "power-loss", "crash", "partition", "freeze"]
#: One reversible fault step of a fire, in the order `FireSpec.effects()` applies them;
#: "peers" is the direct traffic a partition or a flaky network cuts.
Effect = Literal["network", "links", "kill", "storage", "pause", "peers", "disk"]
#: What a disk fault does to a volume's storage.
DiskKind = Literal["freeze", "fail", "full"]
#: Where the Toxiproxy server runs (`dcfire_toxiproxy`): in the test process, as an image,
#: or at a URL.
ToxiproxyMode = Literal["embedded", "image", "url"]
#: `dcfire_share`: a copy of the system per xdist worker, or one for the whole session.
ShareMode = Literal["worker", "session"]

MODES: tuple[Mode, ...] = get_args(Mode)


def is_mode(value: object) -> TypeGuard[Mode]:
    """Whether `value` (from a marker, a call or the ini file) names a mode."""
    return value in MODES


def assert_never(value: NoReturn) -> NoReturn:
    """The end of an exhaustive match: mypy fails if a case of a Literal is left out
    (`typing.assert_never` is Python 3.11+)."""
    raise AssertionError(f"unhandled value: {value!r}")
