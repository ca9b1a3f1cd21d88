"""Brownout and partition arguments, as the fixture and the markers validate them."""

from __future__ import annotations

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.linkfaults import BrownoutSpec, LinkFault, PartitionSpec

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
def test_bad_brownouts_say_what_is_valid(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrownoutSpec.parse(args, kwargs, SITES, SERVICES, where="@brownout")
    assert str(info.value).startswith("@brownout: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("pangyo",), {}, "name the two sites to split apart; one of: ansan, pangyo"),
        (("pangyo", "pangyo"), {}, "a partition is between two different sites"),
        (("pangyo", "seoul"), {}, "unknown site 'seoul'"),
        (("pangyo", "ansan"), {"mode": "x"}, "takes no keywords, only two sites"),
    ],
)
def test_bad_partitions_say_what_is_valid(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^@partition: ") as info:
        PartitionSpec.parse(args, kwargs, SITES, where="@partition")
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
