"""What a fire burns: a `FireSpec` (sites, mode, network, storage) and the fault steps it
is made of, validated the same way for the marker, `dcfire.fire()` and `--dcfire-burn`.

Below the fire controller (fire.py): the fault backends, the links and the marker pipeline
read specs without importing the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_dcfire.errors import ConfigError, check_keywords, did_you_mean, one_of, unknown_name

MODES = ("fire", "power-loss", "crash", "partition", "freeze")
#: Modes that kill the site's processes and start them again on restore.
KILLING_MODES = ("power-loss", "crash")
MARKER_KEYWORDS = ("mode", "network", "storage", "each_site")


@dataclass(frozen=True)
class FireSpec:
    """What to burn and how: sites, mode, and whether the network and storage are cut."""

    sites: tuple[str, ...]
    mode: str = "fire"
    network: bool = True
    storage: bool = True

    @classmethod
    def parse(
        cls,
        sites: Sequence[Any],
        options: Mapping[str, Any],
        valid_sites: Iterable[str],
        where: str = "dc_fire",
    ) -> FireSpec:
        """Validate marker or call arguments; raise ConfigError naming what would be valid."""
        valid = tuple(valid_sites)
        check_keywords(where, options, MARKER_KEYWORDS)
        if not sites:
            raise ConfigError(f"{where}: name at least one site to burn; {one_of(valid)}")
        names: list[str] = []
        for site in sites:
            if not isinstance(site, str):
                raise ConfigError(
                    f"{where}: site {site!r} is not a site name (a string); {one_of(valid)}"
                )
            if site not in valid:
                raise unknown_name(where, "site", site, valid)
            if site not in names:
                names.append(site)
        mode = options.get("mode", "fire")
        if mode not in MODES:
            raise ConfigError(
                f"{where}: unknown mode {mode!r}"
                f"{did_you_mean(str(mode), MODES)}; valid modes: {', '.join(MODES)}"
            )
        flags = {}
        for key in ("network", "storage"):
            value = options.get(key, True)
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key}={value!r} must be True or False")
            flags[key] = value
        spec = cls(tuple(names), str(mode), flags["network"], flags["storage"])
        if not spec.effects():
            raise ConfigError(
                f"{where}: mode {mode!r} with network=False and storage=False does nothing"
            )
        return spec

    def effects(self) -> tuple[str, ...]:
        """The fault steps of this fire, in the order they are applied."""
        if self.mode == "freeze":
            return ("pause",)
        if self.mode == "partition":
            return ("network", "links") if self.network else ()
        if self.mode in KILLING_MODES:
            # Killed before the storage step: a process blocked on a frozen disk (crash)
            # cannot die, and a shut-down pool (power-loss) comes back only once its
            # containers have exited; so the undo thaws or remounts, then starts, then
            # reconnects.
            return tuple(
                k
                for k, on in (
                    ("network", self.network),
                    ("links", self.network),
                    ("kill", True),
                    ("storage", self.storage),
                )
                if on
            )
        # "links" (the Toxiproxy edge) is cut right after the network, whenever it is.
        return tuple(
            k
            for k, on in (
                ("network", self.network),
                ("links", self.network),
                ("storage", self.storage),
            )
            if on
        )

    def describe(self) -> str:
        extra = (
            ""
            if (self.network and self.storage)
            else (f" (network={self.network}, storage={self.storage})")
        )
        return f"{'+'.join(self.sites)} [{self.mode}]{extra}"


def service_names(topology: Any) -> tuple[str, ...]:
    """What a brownout may name besides a site: instances (`api@ansan`) and services (`api`)."""
    names = [s.name for s in topology.services] + [s.base for s in topology.services]
    return tuple(dict.fromkeys(names))
