"""Service handles and names, without an engine: which ports `address()` accepts, and
what a per-site service asked for without its site says (pure logic)."""

from __future__ import annotations

import pytest

from pytest_dcfire.errors import DcfireError
from pytest_dcfire.firespec import service_names
from pytest_dcfire.linkfaults import BrownoutSpec
from pytest_dcfire.runtime.handles import ServiceHandle
from pytest_dcfire.topology.model import Service, Site, Topology

API_NORTH = Service(name="api@north", base="api", site="north", ports=(8080,))
API_SOUTH = Service(name="api@south", base="api", site="south", ports=(8080,))
DB = Service(name="db", base="db", site="north")
TOPOLOGY = Topology("topology.yml", (Site("north"), Site("south")), (API_NORTH, API_SOUTH, DB))


def handle(spec: Service = API_NORTH) -> ServiceHandle:
    return ServiceHandle(spec, None, "10.9.0.2", True, "127.0.0.1", "topology.yml")


def test_address_of_an_undeclared_port_names_service_port_declared_ports_and_the_fix() -> None:
    with pytest.raises(DcfireError) as info:
        handle().address(9090)
    assert str(info.value) == (
        "service api@north: address(9090): port 9090 is not declared in the topology "
        "(declared ports: 8080); address() goes through the link proxy of a declared port, "
        "so that fires and brownouts reach the test. Add it to services.api of topology.yml: "
        "`ports: [8080, 9090]`, or use direct_address(9090) to reach the port with no proxy "
        "in between"
    )


def test_a_declared_port_goes_through_the_router_and_direct_address_takes_any_port() -> None:
    h = handle()
    assert h.address(8080) == ("10.9.0.2", 8080)  # no links: the direct address
    h.route_through(lambda _h, port: ("127.0.0.1", 40000 + port))
    assert h.address(8080) == ("127.0.0.1", 48080)
    assert h.direct_address(9090) == ("10.9.0.2", 9090)


def test_a_service_with_no_ports_and_an_adopted_container_say_so() -> None:
    with pytest.raises(DcfireError, match=r"declared ports: none\).*`ports: \[5432\]`"):
        handle(DB).address(5432)
    adopted = handle(DB)
    adopted.adopted = True
    with pytest.raises(DcfireError, match=r"adopted container has no link proxy.*direct_address"):
        adopted.address(5432)


def test_a_per_site_service_without_its_site_lists_the_instances() -> None:
    with pytest.raises(KeyError) as info:
        TOPOLOGY.service("api")
    assert isinstance(info.value, DcfireError)
    assert str(info.value) == (
        "service 'api' runs one instance per site: pick an instance: api@north, api@south"
    )
    with pytest.raises(KeyError, match=r"unknown service 'dbb' \(did you mean 'db'\?\)"):
        TOPOLOGY.service("dbb")


def test_brownout_names_each_valid_target_once() -> None:
    assert service_names(TOPOLOGY) == ("api@north", "api@south", "db", "api")
    with pytest.raises(DcfireError) as info:
        BrownoutSpec.parse(["apj"], {"latency": 10}, TOPOLOGY.site_names, service_names(TOPOLOGY))
    message = str(info.value)
    assert "(did you mean 'api'?)" in message
    assert message.endswith("valid: north, south, api@north, api@south, db, api")
