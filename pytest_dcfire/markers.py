"""The fault markers (`@dc_fire`, `@brownout`, `@partition`, `@clock`, `@flaky_network`,
`@disk`): their `pytest --markers` help, and their validation against the topology into the
specs that a test's `dcfire` ignites (link faults here; fires by `each_site.specs`).

pytest registers the markers and looks for them in every run: the spec modules load only
when a test carries a fault marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.modes import MODES

if TYPE_CHECKING:
    from pytest_dcfire.clockfaults import ClockSpec
    from pytest_dcfire.diskfaults import DiskSpec
    from pytest_dcfire.fire import FireController
    from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, PartitionSpec
    from pytest_dcfire.topology.model import Topology

BROWNOUT_HELP = (
    "brownout(site_or_service, latency=0, jitter=0, bandwidth=None): degrade every Toxiproxy "
    "link touching a site or service during this test: latency and jitter in ms (one way, "
    "each direction), bandwidth in KB/s; lifted afterwards."
)
CLOCK_HELP = (
    "clock(site_or_service, offset=0, rate=1.0): move the wall clock that its processes read "
    "during this test (offset in seconds, + or -; rate 2.0: twice as fast); needs "
    "`clock: controllable` in the topology; put back afterwards."
)
PARTITION_HELP = (
    "partition(site_a, site_b, one_way=False): cut everything between two sites (direct "
    "traffic and service-to-service links) during this test (both sites stay up: split "
    "brain); a site may be a list of sites (a group); one_way=True drops only what site_a "
    "sends to site_b; healed afterwards."
)
FLAKY_HELP = (
    "flaky_network(site_or_service, loss=0.2): lose that share of the packets to and from its "
    "containers, at random, during this test; healed afterwards."
)
DISK_HELP = (
    "disk(site_or_service, kind): a disk fault on its volumes during this test, everything "
    "else running: 'freeze' (I/O blocks), 'fail' (EIO; lifting restarts the containers that "
    "use them) or 'full' (writes fail with ENOSPC); lifted afterwards."
)
MARKER_HELP = (
    "dc_fire(*sites, mode='fire', network=True, storage=True, each_site=False): burn SITES "
    "during this test: their containers' network is blackholed and their storage frozen after "
    "the test's fixtures are set up, and restored (health-checked) afterwards. "
    "each_site=True runs the test once per site instead (dcfire.burning names it); "
    "storage='fail' or 'full' fails or fills their disks instead of freezing them. "
    f"Modes: {', '.join(MODES)} (power-loss loses what was not fsynced; crash kills the "
    "processes and keeps the disks)."
)
#: Every marker's help, in the order `pytest --markers` lists them.
HELP = (MARKER_HELP, BROWNOUT_HELP, PARTITION_HELP, CLOCK_HELP, FLAKY_HELP, DISK_HELP)


FAULT_MARKERS = ("dc_fire", "brownout", "partition", "clock", "flaky_network", "disk")


def register(config: pytest.Config) -> None:
    """Document every fault marker (`pytest --markers`; no unknown-marker warning)."""
    for line in HELP:
        config.addinivalue_line("markers", line)


def fault_marks(item: pytest.Item) -> list[pytest.Mark]:
    """The item's fault markers, dc_fire first, then link faults, clocks, flaky networks."""
    return [m for name in FAULT_MARKERS for m in item.iter_markers(name)]


def check_items(items: list[pytest.Item], topology: Topology | None) -> None:
    """Check every fault marker before anything starts (one usage error listing every bad
    marker); the tests that have one get the `dcfire` fixture."""
    problems = []
    kinds: set[str] = set()
    for item in items:
        marks = fault_marks(item)
        if not marks:
            continue
        for mark in marks:
            try:
                parse_marker(mark, topology)
            except ConfigError as exc:
                problems.append(f"{item.nodeid}: {exc}")
                kinds.add(mark.name)
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "dcfire" not in fixturenames:
            fixturenames.append("dcfire")
    if problems:
        names = "/".join(sorted(kinds))
        raise pytest.UsageError(f"invalid {names} marker(s):\n  " + "\n  ".join(problems))


def ignite(item: pytest.Item, controller: FireController) -> None:
    """Apply the item's fault markers through its `dcfire`: link faults first (a brownout
    that makes a replica lag must be in place when the fire starts), then the fires, those
    of one mode as one cut."""
    from pytest_dcfire import each_site
    from pytest_dcfire.clockfaults import ClockSpec
    from pytest_dcfire.diskfaults import DiskSpec

    for mark in fault_marks(item):
        if mark.name != "dc_fire":  # link faults first, fires after
            spec = parse_marker(mark, controller.system.topology)
            if isinstance(spec, ClockSpec):
                controller.ignite_clock(spec)
            elif isinstance(spec, DiskSpec):
                controller.ignite_disk(spec)
            elif spec is not None:
                controller.ignite_link_fault(spec)
    fires = each_site.specs(item, controller.system.sites)
    if fires:
        controller.ignite_together(fires)


def parse_marker(
    mark: pytest.Mark, topology: Topology | None
) -> BrownoutSpec | PartitionSpec | ClockSpec | FlakySpec | DiskSpec | None:
    """Validate one fault marker against the topology; return a link fault's spec (fires
    are returned by `each_site.specs`, which knows which site an each_site test burns)."""
    from pytest_dcfire import each_site
    from pytest_dcfire.clockfaults import ClockSpec, check_controllable
    from pytest_dcfire.diskfaults import DiskSpec, check_volumes
    from pytest_dcfire.firespec import service_names
    from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, PartitionSpec

    sites = topology.site_names if topology is not None else ()
    where = f"@{mark.name}{describe_call(mark)}"
    if mark.name == "brownout":
        services = service_names(topology) if topology is not None else ()
        return BrownoutSpec.parse(mark.args, mark.kwargs, sites, services, where=where)
    if mark.name == "clock":
        services = service_names(topology) if topology is not None else ()
        spec = ClockSpec.parse(mark.args, mark.kwargs, sites, services, where=where)
        if topology is not None:
            check_controllable(spec, topology, where)
        return spec
    if mark.name == "disk":
        services = service_names(topology) if topology is not None else ()
        disk = DiskSpec.parse(mark.args, mark.kwargs, sites, services, where=where)
        if topology is not None:
            check_volumes(disk, topology, where)
        return disk
    if mark.name == "partition":
        return PartitionSpec.parse(mark.args, mark.kwargs, sites, where=where)
    if mark.name == "flaky_network":
        services = service_names(topology) if topology is not None else ()
        return FlakySpec.parse(mark.args, mark.kwargs, sites, services, where=where)
    each_site.check(mark, sites, where=where)
    return None


def describe_call(mark: pytest.Mark) -> str:
    args = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"({', '.join(args)})"
