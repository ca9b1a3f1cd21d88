"""What the `docker network disconnect` fallback reconnects a container with."""

from __future__ import annotations

from pytest_dcfire.faults.network import user_aliases

CID = "a246bfaa630d" + "0" * 52


def test_the_engines_short_id_alias_is_dropped() -> None:
    assert user_aliases(CID, ["a246bfaa630d", "db"]) == ["db"]


def test_an_alias_that_is_a_prefix_of_the_id_is_kept() -> None:
    # Found by CI: alias `a2` on a container whose id starts with a2 was dropped, so after
    # the fallback's reconnect the name `a2` no longer resolved.
    assert user_aliases(CID, ["a2", "a246bfaa630d", "a246"]) == ["a2", "a246"]
