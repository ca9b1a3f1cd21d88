"""The session burn in the JUnit XML file: testsuite-level properties.

Matrix jobs that burn different sites write files that would otherwise look the same; these
properties say which sites were dark, how, and which adopted containers went dark with them.
Only the process that writes the file adds them (not an xdist worker).
"""

from __future__ import annotations

from typing import Any

import pytest

#: The testsuite properties (pinned: CI dashboards filter on them).
SITES = "dcfire_burn_sites"
MODE = "dcfire_burn_mode"
ADOPTED = "dcfire_burn_adopted"
SHARE = "dcfire_share"


def add_burn_properties(config: pytest.Config, burn: Any, compose: Any, share: str) -> None:
    if hasattr(config, "workerinput") or not burn:
        return
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - pytest moved it
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    members = getattr(compose, "members", ()) if compose is not None else ()
    adopted = [f"{m.name}@{m.site}" for m in members if m.site in burn.sites]
    xml.add_global_property(SITES, ",".join(burn.sites))
    xml.add_global_property(MODE, burn.mode)
    xml.add_global_property(ADOPTED, ",".join(adopted))
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "numprocesses", None):
        xml.add_global_property(SHARE, share)


__all__ = ["ADOPTED", "MODE", "SHARE", "SITES", "add_burn_properties"]
