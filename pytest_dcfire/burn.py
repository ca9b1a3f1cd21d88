"""`--dcfire-burn SITE`: run a whole, unedited suite while SITE is dark.

The suite burn is one ordinary fire (mode `fire` unless `--dcfire-burn-mode` says otherwise),
ignited once, right after the system under test is up (when `dcfire_topology` is first set
up), and restored once when that fixture is torn down. It goes through its own
`FireController`, so it is recorded in the session's timeline like any test's fire. A test's
own `@dc_fire` on the same site composes with it: the fault backend counts every fault per
container, so the inner fire's restore leaves the site dark, and the health wait after it
skips the sites the suite keeps burning.

Under pytest-xdist, whoever owns a container burns it, once (see share.py): the controller
burns what every worker sees (adopted containers, the shared copy) before any worker starts
and restores it after the last one ended; each worker burns only its own copy. A worker
*holds* what the controller burns (`held`): counted as dark, never cut, undone or waited for.

A blackholed port does not refuse: a client without a timeout hangs on it. Under a burn the
plugin therefore gives every test a pytest-timeout (`dcfire_burn_timeout`, default
`DEFAULT_TEST_TIMEOUT` s) unless the run sets a timeout of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_dcfire.errors import ConfigError, DcfireError, did_you_mean
from pytest_dcfire.modes import MODES, Effect, Mode, is_mode

if TYPE_CHECKING:  # the fire controller loads when a burn first ignites (a cheap plugin import)
    import pluggy
    import pytest

    from pytest_dcfire.fire import FireController
    from pytest_dcfire.firespec import FireSpec
    from pytest_dcfire.lifecycle import Runtime
    from pytest_dcfire.seams import Faults, FireSession, Handle, RunningSystem

INI_BURN = "dcfire_burn"
OPTION = "--dcfire-burn"
INI_MODE = "dcfire_burn_mode"
OPTION_MODE = "--dcfire-burn-mode"
INI_TIMEOUT = "dcfire_burn_timeout"
#: Seconds per test under a burn when the run sets no pytest-timeout of its own.
DEFAULT_TEST_TIMEOUT = 300.0
#: The `test` column of the suite burn's row in the fire table and the report.
RECORD_NAME = "(whole session: --dcfire-burn)"


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    group.addoption(
        OPTION,
        dest="dcfire_burn",
        action="append",
        default=[],
        metavar="SITE",
        help="run every test of the session while SITE is dark (repeatable): ignited once "
        f"after the system is up, restored once at the end (ini: {INI_BURN}).",
    )
    group.addoption(
        OPTION_MODE,
        dest="dcfire_burn_mode",
        metavar="MODE",
        help=f"how {OPTION} burns: {', '.join(MODES)} (default fire; ini: {INI_MODE}).",
    )
    parser.addini(
        INI_BURN,
        "sites that burn for the whole session (like --dcfire-burn SITE; the option wins).",
        type="args",
        default=[],
    )
    parser.addini(INI_MODE, f"mode of the session burn: {', '.join(MODES)} (default fire).")
    parser.addini(
        INI_TIMEOUT,
        "seconds each test may take under a session burn (a pytest-timeout, set only when the "
        f"run sets none itself; 0 = none; default {DEFAULT_TEST_TIMEOUT:g}).",
    )


def burn_mode(cli: str | None, ini: str | None) -> Mode:
    """The session burn's mode (CLI beats ini), checked against the marker's modes."""
    raw, where = (cli, OPTION_MODE) if cli else (ini, INI_MODE)
    mode = str(raw or "").strip() or "fire"
    if not is_mode(mode):
        raise ConfigError(
            f"{where} {mode}: unknown mode {mode!r}{did_you_mean(mode, MODES)}; "
            f"valid modes: {', '.join(MODES)}"
        )
    return mode


def per_test_timeout(ini: str | None) -> float:
    """`dcfire_burn_timeout` in seconds (0: no timeout of ours)."""
    text = str(ini or "").strip()
    if not text:
        return DEFAULT_TEST_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"{INI_TIMEOUT} = {text}: not a number of seconds; use e.g. 120, or 0 for none"
        )
    return value


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


def request_system(items: Sequence[pytest.Item]) -> None:
    """Every test gets `dcfire_topology`, so that the site is dark even for a suite whose
    tests never ask for it (they talk to a compose stack on their own, say)."""
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "dcfire_topology" not in fixturenames:
            fixturenames.append("dcfire_topology")


#: Effects applied per container (the others are per pool or per proxy).
CONTAINER_EFFECTS: tuple[Effect, ...] = ("network", "kill", "pause")


class SuiteBurn:
    """The session-long fire of `sites`; `ignite` once the system is up, `restore` at the end."""

    def __init__(self, sites: Sequence[str], mode: Mode = "fire") -> None:
        self.sites = tuple(sites)
        self.mode = mode
        self.controller: FireController | None = None
        #: Kept burning by another process (the xdist controller under `dcfire_share =
        #: session`): never ignited or restored here, but dark all the same.
        self.elsewhere = False
        #: Container ids the xdist controller keeps dark (adopted containers every worker
        #: sees): counted as dark here, never cut, undone or health-checked here.
        self.held: frozenset[str] = frozenset()
        #: When the sites went dark (wall clock), wherever that happened.
        self.since: float | None = None
        #: Instance names burned, as "name (adopted)" for adopted ones, for failure reports.
        self.members: list[str] = []
        #: Seconds each test may take under the burn (pytest-timeout), and the header line.
        self.test_timeout: float | None = None
        self.timeout_line = ""

    def __bool__(self) -> bool:
        return bool(self.sites)

    @property
    def spec(self) -> FireSpec:
        from pytest_dcfire.firespec import FireSpec

        return FireSpec(self.sites, self.mode)

    def header(self) -> list[str]:
        if not self.sites:
            return []
        mode = "" if self.mode == "fire" else f" (mode {self.mode})"
        lines = [
            f"dcfire: whole session under fire ({OPTION}): {', '.join(self.sites)} dark"
            f"{mode} from system start to session end"
        ]
        return lines + ([self.timeout_line] if self.timeout_line else [])

    def burning(self) -> tuple[str, ...]:
        """Sites this burn keeps dark right now (for the health wait of inner restores)."""
        if self.elsewhere or self.held:
            return self.sites
        if self.controller is None:
            return ()
        return self.controller.burning

    def held_ids(self) -> frozenset[str]:
        return self.held

    def hold(self, faults: Faults, handles: Sequence[Handle]) -> None:
        """Count the controller's faults on `handles` (those in `held`) as our own, so that a
        test's fire of the same site says "already in place" and undoes none of them."""
        effects = [e for e in self.spec.effects() if e in CONTAINER_EFFECTS]
        for handle in handles:
            if _cid(handle) in self.held:
                for effect in effects:
                    faults.hold(effect, str(_cid(handle)))

    def ignite(
        self, system: RunningSystem, state: FireSession, hooks: pluggy.HookRelay | None = None
    ) -> None:
        """Burn the sites (once per session); every later call is a no-op."""
        if not self.sites or self.controller is not None or self.elsewhere:
            return
        handles = [h for site in self.sites for h in system.in_site(site)]
        if self.held:
            assert state.faults is not None  # held: a worker's system, started with faults
            self.hold(state.faults, handles)
        from pytest_dcfire.fire import FireController

        self.controller = FireController(
            system,
            state.make_step,
            state.timeline,
            state.settings.recovery_timeout,
            hooks=hooks,
            item=None,
            links=state.links,
        )
        self.controller.dark_elsewhere = self.held_ids
        mine = [h for h in handles if _cid(h) not in self.held]
        if self.held and not mine:
            return  # everything of these sites is the controller's: nothing to burn here
        state.progress(
            f"burning {', '.join(self.sites)} for the whole session ({OPTION}, mode {self.mode})"
        )
        fire = self.controller.ignite(self.spec)
        fire.record.test = RECORD_NAME
        self.since = self.since or fire.record.ignited_wall
        self.members += [_member(h) for h in mine]

    def joined(self, handle: Handle) -> None:
        """A container adopted into a burning site goes dark too (one more counted fire)."""
        if self.controller is None or handle.site not in self.burning():
            return
        if _cid(handle) in self.held:
            return  # counted already (`hold`), dark by the controller's fire
        from pytest_dcfire.firespec import FireSpec

        fire = self.controller.ignite(FireSpec((handle.site,), self.mode))
        fire.record.test = f"{RECORD_NAME} + adopted {handle.name}"
        self.members.append(_member(handle))

    def dark_now(self) -> str:
        """For a failing test's report: which sites are dark, since when, which containers."""
        if not self.burning():
            return ""
        since = ""
        if self.since is not None:
            clock = time.strftime("%H:%M:%S", time.localtime(self.since))
            since = f" since {clock} ({time.time() - self.since:.1f} s before this report)"
        who = f"; containers: {', '.join(self.members)}" if self.members else ""
        return (
            f"{', '.join(self.sites)} dark for the whole session ({OPTION}, mode "
            f"{self.mode}){since}{who}"
        )

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


def _cid(handle: Handle) -> str | None:
    return getattr(handle.container, "id", None)


def _member(handle: Handle) -> str:
    return f"{handle.name} (adopted)" if getattr(handle, "adopted", False) else handle.name


def own_timeout(config: pytest.Config) -> bool:
    """Whether the run sets a pytest-timeout itself (CLI, ini or environment): ours yields."""
    import os

    try:
        if config.getoption("timeout", None) is not None:
            return True
        if str(config.getini("timeout") or "").strip():
            return True
    except (ValueError, KeyError):
        return False
    return bool(os.environ.get("PYTEST_TIMEOUT"))


def timeout_header(config: pytest.Config, seconds: float) -> tuple[float | None, str]:
    """The per-test timeout the burn adds (None: none) and the header line that says so."""
    if own_timeout(config):
        return None, "dcfire: per-test timeout: the run's own (pytest-timeout)"
    if seconds <= 0:
        return None, (
            f"dcfire: no per-test timeout ({INI_TIMEOUT} = 0): a client without a timeout "
            "hangs on a blackholed port until the job is killed"
        )
    if not config.pluginmanager.hasplugin("timeout"):
        return None, (
            "dcfire: no per-test timeout: install pytest-timeout (a client without a timeout "
            "hangs on a blackholed port until the job is killed)"
        )
    return seconds, (
        f"dcfire: each test may take {seconds:g} s under the burn (pytest-timeout, "
        f"{INI_TIMEOUT}; a blackholed port hangs a client without a timeout)"
    )


def add_timeouts(items: Sequence[pytest.Item], seconds: float | None) -> None:
    """Give every test without a `timeout` marker of its own one of `seconds`, for its body
    only (`func_only`): the system's start, in the first test's set-up, may build images."""
    if seconds is None:
        return
    import pytest

    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds, func_only=True))


def hold_suite_burn(burn: SuiteBurn, runtime: Runtime, described: dict[str, Any]) -> None:
    """The controller keeps the burned sites dark for the whole run: count its faults here,
    so a worker's fire of the same site says "already in place" and its restore undoes
    nothing of the suite burn (a thaw would thaw the controller's freeze)."""
    sites = list(described.get("burn") or ())
    if not sites:
        return
    burn.elsewhere = True
    burn.since = described.get("burn_since")
    burn.members = list(described.get("burn_members") or ())
    effects = burn.spec.effects() if burn.sites else ("network", "links", "storage")
    faults, links = runtime.faults, runtime.links
    handles = [h for site in sites for h in runtime.system.in_site(site)]
    for handle in handles:
        for effect in effects:
            if effect in ("network", "kill", "pause"):
                faults.hold(effect, handle.container.id)
    if faults.pools is not None and "storage" in effects:
        for pool in faults.pools.pools(sites):
            faults.hold("storage", pool.name)
    if links is not None and "links" in effects:
        links.hold(links.proxies_of(handles))
