"""Every site drilled: `@dc_fire(each_site=True)` runs a test once per site of the topology,
and `--dcfire-plan` lists the drills a run would do (each test x the site it burns).

The fire nobody had rehearsed is the one that comes: a suite that only ever burns its
primary site proves nothing about the others, so the plan also names the sites no test burns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.linkfaults import BrownoutSpec, FlakySpec, PartitionSpec

#: The hidden parameter that carries the site of an each_site test.
PARAM = "_dcfire_each_site"


def _options(mark: pytest.Mark) -> dict[str, Any]:
    return {k: v for k, v in mark.kwargs.items() if k != "each_site"}


def is_each_site(mark: pytest.Mark) -> bool:
    return mark.kwargs.get("each_site", False) is True


def generate(metafunc: pytest.Metafunc, sites: Sequence[str]) -> None:
    """Parametrize a test marked `each_site=True` over the sites; ids name the mode and the
    site (`test_x[fire-pangyo]`). Bad markers are left to `check` (a clear usage error)."""
    marks = [m for m in metafunc.definition.iter_markers("dc_fire") if is_each_site(m)]
    if not marks or not sites or any(m.args for m in marks):
        return
    mode = str(marks[0].kwargs.get("mode", "fire"))
    metafunc.fixturenames.append(PARAM)
    metafunc.parametrize(PARAM, list(sites), ids=[f"{mode}-{site}" for site in sites])


def check(mark: pytest.Mark, sites: Sequence[str], where: str) -> None:
    """Validate one marker, each_site included; raise ConfigError naming what is valid."""
    each = mark.kwargs.get("each_site", False)
    if not isinstance(each, bool):
        raise ConfigError(f"{where}: each_site={each!r} must be True or False")
    if not each:
        FireSpec.parse(mark.args, _options(mark), sites, where=where)
        return
    if mark.args:
        names = ", ".join(repr(a) for a in mark.args)
        raise ConfigError(
            f"{where}: each_site=True burns every site in turn ({', '.join(sites) or 'none'}); "
            f"it cannot also name sites ({names}): drop each_site=True or the site names"
        )
    if not sites:
        raise ConfigError(
            f"{where}: each_site=True needs a topology to know the sites; set dcfire_topology "
            "in pytest.ini or pass --dcfire-topology PATH"
        )
    FireSpec.parse((sites[0],), _options(mark), sites, where=where)


def specs(item: pytest.Item, sites: Sequence[str]) -> list[FireSpec]:
    """The fires a test's markers ask for; an each_site marker burns this test's site."""
    site = getattr(item, "callspec", None)
    chosen = site.params.get(PARAM) if site is not None else None
    result = []
    for mark in item.iter_markers("dc_fire"):
        if is_each_site(mark):
            if chosen is None:
                continue  # not parametrized: check() already made it a usage error
            result.append(FireSpec.parse((chosen,), _options(mark), sites))
        else:
            result.append(FireSpec.parse(mark.args, _options(mark), sites))
    return result


def plan_lines(
    items: Iterable[pytest.Item], sites: Sequence[str], services: Sequence[str] = ()
) -> list[str]:
    """The drills: every burning test with what it burns, then the tests whose link faults
    (`@brownout`, `@partition`) drill a slow or split WAN, then the sites nobody burns."""
    rows: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    burned: set[str] = set()
    for item in items:
        what = []
        for mark in item.iter_markers("brownout"):
            try:
                spec = BrownoutSpec.parse(mark.args, mark.kwargs, sites, services)
            except ConfigError:
                continue
            what.append(f"browns out {spec.target} ({spec.describe()})")
        for mark in item.iter_markers("partition"):
            try:
                cut = PartitionSpec.parse(mark.args, mark.kwargs, sites)
            except ConfigError:
                continue
            what.append(f"partitions {cut.describe()}")
        for mark in item.iter_markers("flaky_network"):
            try:
                flaky = FlakySpec.parse(mark.args, mark.kwargs, sites, services)
            except ConfigError:
                continue
            what.append(f"makes {flaky.target} flaky ({flaky.describe()})")
        if what:
            links.append((item.nodeid, "; ".join(what)))
        if not any(True for _ in item.iter_markers("dc_fire")):
            continue
        try:
            fires = specs(item, sites)
        except ConfigError:
            continue
        for fire in fires:
            burned.update(fire.sites)
        rows.append((item.nodeid, "; ".join(fire.describe() for fire in fires)))
    lines = [f"drills: {len(rows)} test(s) burn a site with a dc_fire marker"]
    width = max((len(nodeid) for nodeid, _ in rows + links), default=0)
    lines += [f"  {nodeid.ljust(width)}  burns {what}" for nodeid, what in rows]
    if links:
        lines.append(
            f"link-fault drills: {len(links)} test(s) with @brownout, @partition or @flaky_network"
        )
        lines += [f"  {nodeid.ljust(width)}  {what}" for nodeid, what in links]
    never = [s for s in sites if s not in burned]
    lines.append(
        "sites no marker burns: "
        + (", ".join(never) + " (add @dc_fire(each_site=True) to a test)" if never else "none")
    )
    return lines
