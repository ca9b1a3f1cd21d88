"""Ownership and privilege: what the helper may do, and to whom.

A container that copies our names and every one of our labels, but belongs to another live
session (here: this outer test process), sits next to a site that burns in every mode; it
must keep running, unpaused, reachable and never restarted. The helper runs with the named
capabilities it needs and nothing more.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest
from inner_session import echo_topology, run_inner

from pytest_dcfire.faults.helper import CAPABILITIES
from pytest_dcfire.runtime.engine import SessionIdentity

pytestmark = pytest.mark.docker

TOPOLOGY = echo_topology()

TESTS = """
import socket

import docker
import pytest

from pytest_dcfire import dc_fire
from pytest_dcfire.plugin import SESSION_KEY

FOREIGN = {foreign!r}
STARTED = {started!r}
IP = {ip!r}


def foreign_is_untouched():
    c = docker.from_env().containers.get(FOREIGN)
    assert c.status == "running", c.status
    assert c.attrs["State"]["StartedAt"] == STARTED, "restarted"
    with socket.create_connection((IP, 7000), timeout=2) as s:
        s.sendall(b"still here")
        assert s.recv(20) == b"still here"


@pytest.mark.parametrize("mode", ["fire", "power-loss", "crash", "partition", "freeze"])
def test_a_look_alike_survives(mode, dcfire, dcfire_topology):
    with dcfire.fire("east", mode=mode):
        assert dcfire.burning == ("east",)
        foreign_is_untouched()
    foreign_is_untouched()


def test_the_helper_has_only_its_named_capabilities(request, dcfire_topology):
    helper = request.config.stash[SESSION_KEY].faults.helper
    attrs = docker.from_env().api.inspect_container(helper.container_id)["HostConfig"]
    assert sorted(attrs["CapAdd"]) == sorted({caps!r})
    assert not attrs["Privileged"]
    assert attrs["NetworkMode"] == "none"
    assert attrs["PidMode"] == "host"
"""


@pytest.fixture
def look_alike(faults_echo_image: str) -> Any:
    """An echo server named and labelled as a service of site east of a live session."""
    client = docker.from_env()
    owner = SessionIdentity.new(worker="look-alike")  # this process: alive, never reaped
    container = client.containers.run(
        faults_echo_image,
        name=owner.name("echo@east"),
        labels=owner.labels("service", site="east", service="echo@east", base="echo"),
        detach=True,
    )
    try:
        container.reload()
        yield container
    finally:
        container.remove(force=True)


def test_look_alikes_survive_every_mode_and_the_helper_is_narrow(
    pytester: pytest.Pytester, look_alike: Any, faults_probe: Any
) -> None:
    attrs = look_alike.attrs
    tests = TESTS.format(
        foreign=look_alike.id,
        started=attrs["State"]["StartedAt"],
        ip=attrs["NetworkSettings"]["IPAddress"],
        caps=list(CAPABILITIES),
    )
    faults_probe.wait_listening(look_alike)
    result = run_inner(pytester, TOPOLOGY, tests)
    result.assert_outcomes(passed=6)
    look_alike.reload()
    assert look_alike.status == "running"
    assert look_alike.attrs["State"]["StartedAt"] == attrs["State"]["StartedAt"]
