"""What the reaper's one line says, when everything went and when something would not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker.errors

from pytest_dcfire.runtime.reaper import STALE_ENDPOINT, ReapReport, _remove


def test_the_line_counts_what_went() -> None:
    report = ReapReport(sessions=["dcf1"], containers=2, volumes=1, networks=1)
    assert str(report) == (
        "removed what 1 dead session(s) left (dcf1): 2 container(s), 1 volume(s), 1 network(s)"
    )


def test_what_would_not_go_is_named_with_why() -> None:
    report = ReapReport(sessions=["dcf1"], problems=["dcf1-net: in use"])
    assert str(report).endswith("0 network(s); not removed: dcf1-net: in use")


class Network:
    """A network the engine refuses to remove for its active endpoints."""

    def __init__(self, containers: dict[str, Any]) -> None:
        self.name = "dcf1-net"
        self.attrs: dict[str, Any] = {"Containers": containers}

    def remove(self) -> None:
        raise docker.errors.APIError(
            "409", response=None, explanation="network dcf1-net has active endpoints"
        )

    def reload(self) -> None:
        pass


def test_an_endpoint_count_with_no_container_is_called_the_engine_bug_it_is() -> None:
    report = ReapReport(sessions=["dcf1"])
    assert _remove(Network({}), report) == 0
    assert report.problems == [
        f"dcf1-net: network dcf1-net has active endpoints ({STALE_ENDPOINT})"
    ]


def test_a_network_still_in_use_is_not_called_a_bug() -> None:
    report = ReapReport(sessions=["dcf1"])
    assert _remove(Network({"abc": SimpleNamespace()}), report) == 0
    assert report.problems == ["dcf1-net: network dcf1-net has active endpoints"]
