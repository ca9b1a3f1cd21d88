"""Settings from pytest.ini / pyproject.toml and the command line, validated in one place.

The CLI beats the ini file; relative paths resolve against the ini file's directory (or the
invocation directory when there is no ini file), as a user reading their pytest.ini expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dcfire.errors import ConfigError
from pytest_dcfire.modes import ShareMode, ToxiproxyMode

if TYPE_CHECKING:
    import pytest

INI_TOPOLOGY = "dcfire_topology"
INI_RECOVERY_TIMEOUT = "dcfire_recovery_timeout"
INI_TOXIPROXY = "dcfire_toxiproxy"
INI_KEEP = "dcfire_keep"
INI_SHARE = "dcfire_share"
INI_REPORT = "dcfire_report"
#: Reuse of the running system between sessions (runtime/reuse.py).
INI_REUSE = "dcfire_reuse"
INI_REUSE_TTL = "dcfire_reuse_ttl"
OPTION_REUSE = "--dcfire-reuse"
OPTION_CLEAN = "--dcfire-clean"
DEFAULT_REUSE_TTL = 3600.0
_TTL_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
OPTION_SHARE = "--dcfire-share"
#: Adoption (runtime/adopt.py): here so that declaring its options does not load it.
INI_ADOPT_COMPOSE = "dcfire_adopt_compose"
OPTION_ADOPT_COMPOSE = "--dcfire-adopt-compose"
#: ini key declaring the sites when no topology file or compose project does.
INI_SITES = "dcfire_sites"
#: Service label naming the site of a compose service (`labels: {dcfire.site: pangyo}`).
SITE_LABEL = "dcfire.site"

#: pytest-xdist: `worker` (each worker starts its own copy) or `session` (one shared copy).
SHARE_MODES: tuple[ShareMode, ...] = ("worker", "session")
SHARE_FORMS = (
    "worker (each pytest-xdist worker starts its own copy; the default) or session (one "
    "copy for the whole run, started by the xdist controller; fires serialised by a lock)"
)

DEFAULT_RECOVERY_TIMEOUT = 60.0
TOXIPROXY_FORMS = (
    "embedded, image:<ref> (e.g. image:ghcr.io/shopify/toxiproxy:2.12.0) or url:<http://host:port>"
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything the plugin reads from configuration, already checked."""

    topology: Path | None
    recovery_timeout: float
    toxiproxy: str
    keep: bool
    plan: bool
    rootdir: Path
    share: ShareMode = "worker"
    #: --dcfire-reuse: keep the system for the next session and reuse a kept one.
    reuse: bool = False
    #: Seconds since its last use after which a kept reusable system may be reaped.
    reuse_ttl: float = DEFAULT_REUSE_TTL

    @property
    def keeps_system(self) -> bool:
        """The system outlives this session (`--dcfire-keep`, `--dcfire-reuse`): if its
        process dies, even by SIGKILL, the helper only undoes the faults (label
        `on-owner-death=undo-faults`) instead of removing everything of the session."""
        return self.keep or self.reuse

    @property
    def toxiproxy_mode(self) -> ToxiproxyMode:
        """`image` or `url` (the form's prefix), else `embedded`."""
        kind = self.toxiproxy.split(":", 1)[0]
        if kind == "image":
            return "image"
        return "url" if kind == "url" else "embedded"


def parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{key} = {value!r} is not a boolean; use one of: true, false, 1, 0")


def parse_timeout(key: str, value: Any) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{key} = {value!r} is not valid; give a positive number of seconds, e.g. 60"
        )
    return seconds


def parse_toxiproxy(key: str, value: Any) -> str:
    text = str(value).strip()
    if text == "embedded":
        return text
    kind, _, rest = text.partition(":")
    if kind == "image" and rest.strip():
        return f"image:{rest.strip()}"
    if kind == "url" and rest.strip().startswith(("http://", "https://")):
        return f"url:{rest.strip()}"
    raise ConfigError(f"{key} = {value!r} is not valid; use {TOXIPROXY_FORMS}")


def parse_ttl(key: str, value: Any) -> float:
    """Seconds from `3600`, `90s`, `30m`, `1h` or `2d`."""
    text = str(value).strip().lower()
    unit = _TTL_UNITS.get(text[-1:]) if text else None
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{key} = {value!r} is not valid; give a positive duration: seconds (3600) or "
            "a number with s, m, h or d (90s, 30m, 1h, 2d)"
        )
    return seconds


def parse_share(key: str, value: Any) -> ShareMode:
    text = str(value).strip().lower()
    for mode in SHARE_MODES:
        if text == mode:
            return mode
    raise ConfigError(f"{key} = {value!r} is not valid; use {SHARE_FORMS}")


def read_settings(
    ini: dict[str, Any], cli: dict[str, Any], inipath: Path | None, invocation_dir: Path
) -> Settings:
    """Merge ini values and CLI options (CLI wins) into validated `Settings`."""
    base = inipath.parent if inipath is not None else invocation_dir

    topology: Path | None = None
    where = "--dcfire-topology" if cli.get("topology") else INI_TOPOLOGY
    raw_topology = cli.get("topology") or ini.get(INI_TOPOLOGY) or None
    if raw_topology:
        # A CLI path is relative to where the user typed it; an ini path to the ini file.
        root = invocation_dir if cli.get("topology") else base
        topology = (root / str(raw_topology).strip()).resolve()
        if not topology.is_file():
            raise ConfigError(
                f"{where} = {str(raw_topology)!r}: no such file ({topology}); give the path of "
                "a topology YAML or docker-compose file"
                + ("" if cli.get("topology") else f", relative to {base}")
            )

    keep = bool(cli.get("keep")) or parse_bool(INI_KEEP, ini.get(INI_KEEP) or "false")
    # --dcfire-keep keeps its meaning (kept, never reused): it wins over reuse.
    reuse = not keep and (
        bool(cli.get("reuse")) or parse_bool(INI_REUSE, ini.get(INI_REUSE) or "false")
    )
    reuse_ttl = parse_ttl(INI_REUSE_TTL, ini.get(INI_REUSE_TTL) or DEFAULT_REUSE_TTL)
    if cli.get("share") is not None:
        share = parse_share(OPTION_SHARE, cli["share"])
    else:
        share = parse_share(INI_SHARE, ini.get(INI_SHARE) or "worker")
    return Settings(
        topology=topology,
        recovery_timeout=parse_timeout(
            INI_RECOVERY_TIMEOUT, ini.get(INI_RECOVERY_TIMEOUT) or DEFAULT_RECOVERY_TIMEOUT
        ),
        toxiproxy=parse_toxiproxy(INI_TOXIPROXY, ini.get(INI_TOXIPROXY) or "embedded"),
        keep=keep,
        plan=bool(cli.get("plan")),
        rootdir=base,
        share=share,
        reuse=reuse,
        reuse_ttl=reuse_ttl,
    )


def report_path(config: pytest.Config) -> str | None:
    """Where to write the report: `--dcfire-report` (relative to where pytest was started)
    beats the ini key (relative to the ini file); None when neither is set."""
    cli = config.getoption("dcfire_report", None)
    raw = cli or config.getini(INI_REPORT) or None
    if not raw:
        return None
    if cli:
        base, where = Path(config.invocation_params.dir), "--dcfire-report"
    else:
        base = Path(config.inipath).parent if config.inipath else Path(config.invocation_params.dir)
        where = INI_REPORT
    path = (base / str(raw).strip()).resolve()
    if path.is_dir():
        raise ConfigError(
            f"{where} = {str(raw)!r}: {path} is a directory; give a file path such as "
            "dcfire-report.html"
        )
    return str(path)


def add_reuse_options(group: Any, parser: Any) -> None:
    """--dcfire-reuse, --dcfire-clean, dcfire_reuse and dcfire_reuse_ttl (runtime/reuse.py)."""
    group.addoption(
        OPTION_REUSE,
        dest="dcfire_reuse",
        action="store_true",
        default=False,
        help="keep the system after the session for the next one, and reuse a kept one whose "
        "topology file, images and plugin are unchanged, after undoing any fault left on it "
        f"(ini: {INI_REUSE}). Data carries over; dcfire_topology.reset(name) starts afresh.",
    )
    group.addoption(
        OPTION_CLEAN,
        dest="dcfire_clean",
        action="store_true",
        default=False,
        help="remove every reusable system of this user on this engine, then exit (no test runs).",
    )
    parser.addini(
        INI_REUSE,
        "keep and reuse the system between sessions (true/false, default false).",
        default="false",
    )
    parser.addini(
        INI_REUSE_TTL,
        "how long after its last use a kept reusable system may be removed by another "
        "session's cleanup: seconds, or 90s, 30m, 1h, 2d (default 1h).",
        default="1h",
    )


def add_adopt_options(group: Any, parser: Any) -> None:
    """--dcfire-adopt-compose, dcfire_adopt_compose and dcfire_sites (runtime/adopt.py)."""
    group.addoption(
        OPTION_ADOPT_COMPOSE,
        dest="dcfire_adopt_compose",
        metavar="PROJECT",
        help="adopt every running container of compose project PROJECT, each in the site "
        f"named by its service label {SITE_LABEL} (ini: {INI_ADOPT_COMPOSE}).",
    )
    parser.addini(
        INI_ADOPT_COMPOSE,
        "name of a running compose project whose containers are adopted (sites from the "
        f"{SITE_LABEL} service label); no topology file is needed.",
    )
    parser.addini(
        INI_SITES,
        "sites of a system made only of adopted containers (testcontainers, docker run), "
        "e.g. `east west`; for sessions without a topology file.",
        type="args",
        default=[],
    )
