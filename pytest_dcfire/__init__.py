"""pytest-dcfire: burn a data center during a pytest test, and prove the system recovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_dcfire.lazy import lazy_names

if TYPE_CHECKING:
    from pytest_dcfire.diskfaults import DiskSpec
    from pytest_dcfire.errors import (
        ConfigError,
        DcfireError,
        EngineUnavailable,
        FireError,
        RecoveryTimeout,
        StartupError,
        TopologyError,
    )
    from pytest_dcfire.fire import Fire, FireController
    from pytest_dcfire.firespec import FireSpec
    from pytest_dcfire.history.workload import Fail, Indeterminate
    from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec
    from pytest_dcfire.modes import Mode
    from pytest_dcfire.recovery import Recovery
    from pytest_dcfire.runtime.handles import ServiceHandle
    from pytest_dcfire.runtime.system import System

#: `@dc_fire("site-a")` is `@pytest.mark.dc_fire("site-a")`.
dc_fire = pytest.mark.dc_fire
#: `@brownout("ansan", latency=100)` is `@pytest.mark.brownout(...)`.
brownout = pytest.mark.brownout
#: `@partition("pangyo", "ansan")` is `@pytest.mark.partition(...)`.
partition = pytest.mark.partition
#: `@clock("ansan", offset=3600)` is `@pytest.mark.clock(...)`.
clock = pytest.mark.clock
#: `@disk("ansan", "fail")` is `@pytest.mark.disk(...)`.
disk = pytest.mark.disk
#: `@flaky_network("ansan", loss=0.2)` is `@pytest.mark.flaky_network(...)` (not
#: `flaky`: pytest-rerunfailures and the flaky plugin own `@pytest.mark.flaky`).
flaky_network = pytest.mark.flaky_network

__all__ = [
    "BrownoutSpec",
    "ConfigError",
    "DcfireError",
    "DiskSpec",
    "EngineUnavailable",
    "Fail",
    "Fire",
    "FireController",
    "FireError",
    "FireSpec",
    "FlakySpec",
    "Indeterminate",
    "LinkFault",
    "Mode",
    "PartitionSpec",
    "Recovery",
    "RecoveryTimeout",
    "ServiceHandle",
    "StartupError",
    "System",
    "TopologyError",
    "brownout",
    "clock",
    "dc_fire",
    "disk",
    "flaky_network",
    "partition",
]


#: Every public class, loaded from its module on first use: pytest imports this package (for
#: the plugin) in every run of every project that has it installed, and a run that burns
#: nothing needs none of them (not the fire controller, the checkers behind `Fail` and
#: `Indeterminate`, nor Docker behind `System` and `ServiceHandle`). The markers above are
#: pytest's own objects and cost nothing.
_WHERE = {
    "BrownoutSpec": "linkfaults",
    "ConfigError": "errors",
    "DcfireError": "errors",
    "DiskSpec": "diskfaults",
    "EngineUnavailable": "errors",
    "Fail": "history.workload",
    "Fire": "fire",
    "FireController": "fire",
    "FireError": "errors",
    "FireSpec": "firespec",
    "FlakySpec": "linkfaults",
    "Indeterminate": "history.workload",
    "LinkFault": "linkfaults",
    "Mode": "modes",
    "PartitionSpec": "linkfaults",
    "Recovery": "recovery",
    "RecoveryTimeout": "errors",
    "ServiceHandle": "runtime.handles",
    "StartupError": "errors",
    "System": "runtime.system",
    "TopologyError": "errors",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
