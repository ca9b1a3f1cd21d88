"""`--dcfire-burn SITE`: run a whole, unedited suite while SITE is dark.

The suite burn is one ordinary fire (mode `fire`: network blackholed, storage frozen),
ignited once, right after the system under test is up (when `dcfire_topology` is first set
up), and restored once when that fixture is torn down. It goes through its own
`FireController`, so it is recorded in the session's timeline like any test's fire. A test's
own `@dc_fire` on the same site composes with it: the fault backend counts every fault per
container, so the inner fire's restore leaves the site dark, and the health wait after it
skips the sites the suite keeps burning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pytest_dcfire.errors import ConfigError, DcfireError, did_you_mean
from pytest_dcfire.fire import FireController, FireSpec

INI_BURN = "dcfire_burn"
OPTION = "--dcfire-burn"
#: The `test` column of the suite burn's row in the fire table and the report.
RECORD_NAME = "(whole session: --dcfire-burn)"


def add_options(group: Any, parser: Any) -> None:
    group.addoption(
        OPTION,
        dest="dcfire_burn",
        action="append",
        default=[],
        metavar="SITE",
        help="run every test of the session while SITE is dark (repeatable): ignited once "
        f"after the system is up, restored once at the end (ini: {INI_BURN}).",
    )
    parser.addini(
        INI_BURN,
        "sites that burn for the whole session (like --dcfire-burn SITE; the option wins).",
        type="args",
        default=[],
    )


def burn_sites(cli: Sequence[str], ini: Sequence[str], valid: Iterable[str]) -> tuple[str, ...]:
    """The sites to keep dark, checked against the topology's sites (CLI beats ini)."""
    raw = list(cli) if cli else list(ini)
    where = OPTION if cli else INI_BURN
    names = [s.strip() for item in raw for s in str(item).split(",") if s.strip()]
    if not names:
        return ()
    valid_sites = tuple(valid)
    if not valid_sites:
        raise ConfigError(
            f"{where} {names[0]}: there is no system to burn; set dcfire_topology (or "
            "dcfire_adopt_compose) in pytest.ini, or pass --dcfire-topology PATH"
        )
    for name in names:
        if name not in valid_sites:
            raise ConfigError(
                f"{where} {name}: unknown site {name!r}{did_you_mean(name, valid_sites)}; "
                f"valid sites: {', '.join(valid_sites)}"
            )
    return tuple(dict.fromkeys(names))


def request_system(items: Sequence[Any]) -> None:
    """Every test gets `dcfire_topology`, so that the site is dark even for a suite whose
    tests never ask for it (they talk to a compose stack on their own, say)."""
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "dcfire_topology" not in fixturenames:
            fixturenames.append("dcfire_topology")


class SuiteBurn:
    """The session-long fire of `sites`; `ignite` once the system is up, `restore` at the end."""

    def __init__(self, sites: Sequence[str]) -> None:
        self.sites = tuple(sites)
        self.controller: FireController | None = None
        #: Kept burning by another process (the xdist controller under `dcfire_share =
        #: session`): never ignited or restored here, but dark all the same.
        self.elsewhere = False

    def __bool__(self) -> bool:
        return bool(self.sites)

    def header(self) -> list[str]:
        if not self.sites:
            return []
        return [
            f"dcfire: whole session under fire ({OPTION}): {', '.join(self.sites)} dark "
            "from system start to session end"
        ]

    def burning(self) -> tuple[str, ...]:
        """Sites this burn keeps dark right now (for the health wait of inner restores)."""
        if self.elsewhere:
            return self.sites
        if self.controller is None:
            return ()
        return self.controller.burning

    def ignite(self, system: Any, state: Any, hooks: Any = None) -> None:
        """Burn the sites (once per session); every later call is a no-op."""
        if not self.sites or self.controller is not None or self.elsewhere:
            return
        self.controller = FireController(
            system,
            state.make_step,
            state.timeline,
            state.settings.recovery_timeout,
            hooks=hooks,
            item=None,
            links=state.links,
        )
        state.progress(f"burning {', '.join(self.sites)} for the whole session ({OPTION})")
        fire = self.controller.ignite(FireSpec(self.sites))
        fire.record.test = RECORD_NAME

    def joined(self, handle: Any) -> None:
        """A container adopted into a burning site goes dark too (one more counted fire)."""
        if self.controller is None or handle.site not in self.burning():
            return
        fire = self.controller.ignite(FireSpec((handle.site,)))
        fire.record.test = f"{RECORD_NAME} + adopted {handle.name}"

    def restore(self) -> None:
        """Undo the suite burn (and wait for health); raises if the recovery failed."""
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.restore()

    def restore_quietly(self) -> str | None:
        """`restore`, returning what went wrong instead of raising (for fixture teardown)."""
        try:
            self.restore()
        except DcfireError as exc:
            return f"{OPTION} {', '.join(self.sites)}: recovery at session end failed: {exc}"
        return None
