"""What a fire burns: a `FireSpec` (sites, mode, network, storage) and the fault steps it
is made of, validated the same way for the marker, `dcfire.fire()` and `--dcfire-burn`.

Below the fire controller (fire.py): the fault backends, the links and the marker pipeline
read specs without importing the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_dcfire.diskfaults import fire_storage
from pytest_dcfire.errors import ConfigError, check_keywords, did_you_mean, one_of, unknown_name
from pytest_dcfire.modes import MODES, Effect, Mode, assert_never, is_mode

if TYPE_CHECKING:
    from pytest_dcfire.modes import DiskKind
    from pytest_dcfire.topology.model import Topology

MARKER_KEYWORDS = ("mode", "network", "storage", "each_site")


@dataclass(frozen=True)
class FireSpec:
    """What to burn and how: sites, mode, and whether the network and storage are cut."""

    sites: tuple[str, ...]
    mode: Mode = "fire"
    network: bool = True
    #: True: the mode's own storage fault (frozen; shut down by a power loss); or a disk
    #: fault kind, "fail" or "full" ("freeze" is read as True).
    storage: bool | DiskKind = True

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
        if not is_mode(mode):
            raise ConfigError(
                f"{where}: unknown mode {mode!r}"
                f"{did_you_mean(str(mode), MODES)}; valid modes: {', '.join(MODES)}"
            )
        network = options.get("network", True)
        if not isinstance(network, bool):
            raise ConfigError(f"{where}: network={network!r} must be True or False")
        spec = cls(tuple(names), mode, network, fire_storage(options, mode, where))
        if not spec.effects():
            raise ConfigError(
                f"{where}: mode {mode!r} with network=False and storage=False does nothing"
            )
        return spec

    def effects(self) -> tuple[Effect, ...]:
        """The fault steps of this fire, in the order they are applied."""
        steps: tuple[tuple[Effect, bool], ...]
        if self.mode == "freeze":
            return ("pause",)
        if self.mode == "partition":
            return ("network", "links") if self.network else ()
        if self.mode == "power-loss" or self.mode == "crash":
            # Killed before the storage step: a process blocked on a frozen disk (crash)
            # cannot die, and a shut-down pool (power-loss) comes back only once its
            # containers have exited; so the undo thaws or remounts, then starts, then
            # reconnects.
            steps = (
                ("network", self.network),
                ("links", self.network),
                ("kill", True),
                ("storage", self.storage is not False),
            )
        elif self.mode == "fire":
            # "links" (the Toxiproxy edge) is cut right after the network, whenever it is.
            steps = (
                ("network", self.network),
                ("links", self.network),
                ("storage", self.storage is not False),
            )
        else:
            assert_never(self.mode)
        return tuple(k for k, on in steps if on)

    def describe(self) -> str:
        extra = (
            ""
            if (self.network and self.storage is True)
            else (f" (network={self.network}, storage={self.storage})")
        )
        return f"{'+'.join(self.sites)} [{self.mode}]{extra}"


def service_names(topology: Topology) -> tuple[str, ...]:
    """What a brownout may name besides a site: instances (`api@ansan`) and services (`api`)."""
    names = [s.name for s in topology.services] + [s.base for s in topology.services]
    return tuple(dict.fromkeys(names))
