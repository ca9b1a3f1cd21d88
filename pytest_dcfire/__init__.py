"""pytest-dcfire: burn a data center during a pytest test, and prove the system recovers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

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
from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec
from pytest_dcfire.modes import Mode
from pytest_dcfire.recovery import Recovery

if TYPE_CHECKING:
    from pytest_dcfire.history.workload import Fail, Indeterminate
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


#: Loaded on first use, so that importing the plugin loads neither the history checkers
#: (`Fail`, `Indeterminate`: raised by workload operations) nor Docker (`System`, what
#: `dcfire_topology` returns, and its `ServiceHandle`s).
_LAZY = {
    "Fail": "pytest_dcfire.history.workload",
    "Indeterminate": "pytest_dcfire.history.workload",
    "System": "pytest_dcfire.runtime.system",
    "ServiceHandle": "pytest_dcfire.runtime.handles",
}


def __getattr__(name: str) -> Any:
    """The names of `_LAZY`, imported when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
