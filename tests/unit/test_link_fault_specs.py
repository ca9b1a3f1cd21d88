"""Brownout, partition (one-way, groups) and flaky arguments, as the fixture and the markers validate them."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, LinkFault, PartitionSpec

SITES = ("pangyo", "ansan")
SERVICES = ("db", "api@pangyo", "api")


def test_brownout_spec_keeps_what_was_asked() -> None:
    spec = BrownoutSpec.parse(("ansan",), {"latency": 100, "jitter": 5}, SITES, SERVICES)
    assert spec == BrownoutSpec("ansan", 100.0, 5.0, None)
    assert spec.describe() == "+100 ms ±5"
    assert BrownoutSpec.parse(("db",), {"bandwidth": 64}, SITES, SERVICES).describe() == "64 KB/s"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (),
            {"latency": 1},
            "name one site or service to brown out; one of: ansan, api, api@pangyo, db, pangyo",
        ),
        (("ansna",), {"latency": 1}, "unknown site or service 'ansna' (did you mean 'ansan'?)"),
        (("ansan",), {"latncy": 1}, "unknown keyword 'latncy' (did you mean 'latency'?)"),
        (("ansan",), {"latency": -1}, "latency=-1 must be a number of ms >= 0"),
        (("ansan",), {"latency": "1s"}, "latency='1s' must be a number of ms >= 0"),
        (("ansan",), {"bandwidth": 0}, "bandwidth=0 must be an integer KB/s > 0"),
        (("ansan",), {}, "give latency=, jitter= or bandwidth= (nothing to do)"),
    ],
)
def test_bad_brownouts_say_what_is_valid(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        BrownoutSpec.parse(args, kwargs, SITES, SERVICES, where="@brownout")
    assert str(info.value).startswith("@brownout: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ("pangyo",),
            {},
            "name the two sites (or groups of sites, as lists) to split apart; "
            "one of: ansan, daejeon, pangyo",
        ),
        (("pangyo", "pangyo"), {}, "site 'pangyo' is in two groups"),
        ((["pangyo", "ansan"], "ansan"), {}, "site 'ansan' is in two groups"),
        (("pangyo", "seoul"), {}, "unknown site 'seoul'"),
        ((["pangyo", "seoul"], "ansan"), {}, "unknown site 'seoul'"),
        (("pangyo", []), {}, "an empty group of sites"),
        (("pangyo", "ansan"), {"mode": "x"}, "unknown keyword 'mode'; valid keywords: one_way"),
        (("pangyo", "ansan"), {"one_wya": True}, "unknown keyword 'one_wya' (did you mean"),
        (("pangyo", "ansan"), {"one_way": "yes"}, "one_way='yes' must be True or False"),
        (
            ("pangyo", "ansan", "daejeon"),
            {"one_way": True},
            "one_way=True needs exactly two sites or groups (from, to), got 3",
        ),
    ],
)
def test_bad_partitions_say_what_is_valid(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^@partition: ") as info:
        PartitionSpec.parse(args, kwargs, (*SITES, "daejeon"), where="@partition")
    assert message in str(info.value)


def test_partition_specs_one_way_and_groups() -> None:
    sites = (*SITES, "daejeon")
    plain = PartitionSpec.parse(("pangyo", "ansan"), {}, sites)
    assert plain.groups == (("pangyo",), ("ansan",)) and not plain.one_way
    assert plain.describe() == "pangyo | ansan" and plain.sites == ("pangyo", "ansan")
    one_way = PartitionSpec.parse(("ansan", "pangyo"), {"one_way": True}, sites)
    assert one_way.describe() == "ansan -> pangyo"
    groups = PartitionSpec.parse((["pangyo", "daejeon"], "ansan"), {}, sites)
    assert groups.groups == (("pangyo", "daejeon"), ("ansan",))
    assert groups.describe() == "pangyo+daejeon | ansan"
    three = PartitionSpec.parse(("pangyo", "ansan", "daejeon"), {}, sites)
    assert three.describe() == "pangyo | ansan | daejeon"


def test_flaky_spec_keeps_the_loss_in_whole_percent() -> None:
    spec = FlakySpec.parse(("api@pangyo",), {"loss": 0.2}, SITES, SERVICES)
    assert spec == FlakySpec("api@pangyo", 0.2) and spec.percent == 20
    assert spec.describe() == "20% loss"
    assert FlakySpec.parse(("ansan",), {"loss": 1}, SITES, SERVICES).percent == 100


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {"loss": 0.2}, "name one site or service to make flaky; one of: ansan, api"),
        (("ansna",), {"loss": 0.2}, "unknown site or service 'ansna' (did you mean 'ansan'?)"),
        (("ansan",), {}, "give loss= (the share of packets lost, e.g. loss=0.2)"),
        (("ansan",), {"los": 0.2}, "unknown keyword 'los' (did you mean 'loss'?)"),
        (("ansan",), {"loss": 0}, "loss=0 must be a share of packets from 0.01 to 1"),
        (("ansan",), {"loss": 20}, "loss=20 must be a share of packets from 0.01 to 1"),
        (("ansan",), {"loss": 0.255}, "loss=0.255 must be a share"),
        (("ansan",), {"loss": "20%"}, "loss='20%' must be a share"),
        (("ansan",), {"loss": True}, "loss=True must be a share"),
    ],
)
def test_bad_flaky_networks_say_what_is_valid(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^@flaky_network: ") as info:
        FlakySpec.parse(args, kwargs, SITES, SERVICES, where="@flaky_network")
    assert message in str(info.value)


def test_a_link_fault_lifts_once_and_works_as_a_context_manager() -> None:
    calls: list[str] = []
    fault = LinkFault("partition", "pangyo|ansan", "links cut", ["p1"])
    fault.undo = lambda f: calls.append(f.target)
    with fault as entered:
        assert entered.active
    assert not fault.active
    fault.lift()
    assert calls == ["pangyo|ansan"]
