"""The seams where the fire controller, the fault backend, the links and the running system
meet: Protocols of the few members each side uses of the other, so mypy checks every
implementation (and every fake in a unit test) against the same contract; and the step
factory that joins them.

Below the runtime and the faults, above the specs, steps and the timeline it names (for the
type checker only: importing it costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from pytest_dcfire.modes import Effect

if TYPE_CHECKING:
    from pytest_dcfire.config import Settings
    from pytest_dcfire.diskfaults import DiskSpec
    from pytest_dcfire.firespec import FireSpec
    from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec
    from pytest_dcfire.steps import Step
    from pytest_dcfire.timeline import Timeline
    from pytest_dcfire.topology.model import Service, Topology

#: What a fault step is made from: a fire, a partition, a flaky network or a disk fault.
FaultSpec: TypeAlias = "FireSpec | PartitionSpec | FlakySpec | DiskSpec"
#: (effect, spec, handles) -> Step; a partition asks for effect "peers" with its PartitionSpec.
StepFactory: TypeAlias = "Callable[[Effect, FaultSpec, Sequence[Handle]], Step]"


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
