"""Every container learns its site and instance name from its environment."""

from __future__ import annotations

from pytest_dcfire.runtime.system import instance_environment
from pytest_dcfire.topology.model import Service


def test_instances_get_their_site_and_name() -> None:
    svc = Service(name="api@ansan", base="api", site="ansan", environment=(("A", "1"),))
    assert instance_environment(svc) == {
        "DCFIRE_SITE": "ansan",
        "DCFIRE_SERVICE": "api@ansan",
        "A": "1",
    }


def test_the_topology_wins_over_the_defaults() -> None:
    svc = Service(name="db", base="db", site="pangyo", environment=(("DCFIRE_SITE", "x"),))
    assert instance_environment(svc)["DCFIRE_SITE"] == "x"
