"""The seams where the fire controller, the fault backend, the links and the running system
meet: the names a fire is made of (`Mode`, `Effect`, `DiskKind`) and Protocols of the few
members each side uses of the other, so mypy checks every implementation (and every fake in
a unit test) against the same contract.

The bottom of the layering: it imports nothing of the package at run time (the types named
in the Protocols are imported for the type checker only), so importing it costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, TypeAlias, TypeGuard, get_args

if TYPE_CHECKING:
    from pytest_dcfire.config import Settings
    from pytest_dcfire.diskfaults import DiskSpec
    from pytest_dcfire.fire import FireSpec, Step, Timeline
    from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec
    from pytest_dcfire.topology.model import Service, Topology

#: How a fire burns its sites (the `mode=` of `dc_fire` and `dcfire.fire`).
Mode = Literal["fire", "power-loss", "crash", "partition", "freeze"]
#: One reversible fault step of a fire, in the order `FireSpec.effects()` applies them;
#: "peers" is the direct traffic a partition or a flaky network cuts.
Effect = Literal["network", "links", "kill", "storage", "pause", "peers", "disk"]
#: What a disk fault does to a volume's storage.
DiskKind = Literal["freeze", "fail", "full"]
#: What a fault step is made from: a fire, a partition, a flaky network or a disk fault.
FaultSpec: TypeAlias = "FireSpec | PartitionSpec | FlakySpec | DiskSpec"
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


class Handle(Protocol):
    """One running service instance as the fire controller, the faults and the links see it
    (`runtime.handles.ServiceHandle`, what a test holds, is the real one)."""

    @property
    def name(self) -> str: ...

    @property
    def site(self) -> str: ...

    @property
    def spec(self) -> Service: ...

    #: The docker SDK's container object (the SDK has no types).
    @property
    def container(self) -> Any: ...

    #: Started elsewhere and adopted into a site: its storage is not ours to cut.
    @property
    def adopted(self) -> bool: ...


class RunningSystem(Protocol):
    """The system a fire burns (`runtime.system.System` is the real one): its sites, the
    instances in each, and a health wait for them after a restore (for instances it gave)."""

    @property
    def topology(self) -> Topology: ...

    @property
    def sites(self) -> tuple[str, ...]: ...

    def in_site(self, site: str) -> Sequence[Handle]: ...

    def __iter__(self) -> Iterator[Handle]: ...

    def wait_healthy(self, handles: Sequence[Handle]) -> object: ...


class Faults(Protocol):
    """The fault backend as the session burn and the step factory see it
    (`faults.backend.FaultBackend` is the real one)."""

    def make_step(
        self,
        effect: Effect,
        spec: FaultSpec,
        handles: Sequence[Handle],
    ) -> Step: ...

    def hold(self, effect: Effect, key: str) -> None:
        """Count a fault someone else applied, so that our fires never undo it."""


class LinkFaults(Protocol):
    """The Toxiproxy links as the fire controller sees them (`links.Links` is the real one)."""

    def partition(
        self, spec: PartitionSpec, test: str = "", direct: Step | None = None
    ) -> LinkFault: ...

    def brownout(
        self, spec: BrownoutSpec, handles: Sequence[Handle], test: str = ""
    ) -> LinkFault: ...


class FireSession(Protocol):
    """The session as a session-long fire sees it (`burn.SuiteBurn`; `session.DcfireSession`
    is the real one): where its steps come from, where it is recorded, what it may hold."""

    @property
    def faults(self) -> Faults | None: ...

    @property
    def links(self) -> LinkFaults | None: ...

    @property
    def timeline(self) -> Timeline: ...

    @property
    def settings(self) -> Settings: ...

    def make_step(
        self,
        effect: Effect,
        spec: FaultSpec,
        handles: Sequence[Handle],
    ) -> Step: ...

    def progress(self, line: str, /) -> None: ...
