"""pytest-dcfire: burn a data center during a pytest test, and prove the system recovers."""

from __future__ import annotations

import pytest

from pytest_dcfire.errors import (
    ConfigError,
    DcfireError,
    EngineUnavailable,
    FireError,
    RecoveryTimeout,
    StartupError,
    TopologyError,
)
from pytest_dcfire.fire import Fire, FireSpec
from pytest_dcfire.linkfaults import BrownoutSpec, LinkFault, PartitionSpec
from pytest_dcfire.recovery import Recovery

#: `@dc_fire("site-a")` is `@pytest.mark.dc_fire("site-a")`.
dc_fire = pytest.mark.dc_fire
#: `@brownout("ansan", latency=100)` is `@pytest.mark.brownout(...)`.
brownout = pytest.mark.brownout
#: `@partition("pangyo", "ansan")` is `@pytest.mark.partition(...)`.
partition = pytest.mark.partition

__all__ = [
    "BrownoutSpec",
    "ConfigError",
    "DcfireError",
    "EngineUnavailable",
    "Fire",
    "FireError",
    "FireSpec",
    "LinkFault",
    "PartitionSpec",
    "Recovery",
    "RecoveryTimeout",
    "StartupError",
    "TopologyError",
    "brownout",
    "dc_fire",
    "partition",
]
