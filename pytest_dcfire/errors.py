"""The one exception family of pytest-dcfire.

Every message names where the problem is (file, key path, value) and what would be valid, so
that a user can act on it without reading a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: ANSI escape sequences (colours, cursor moves) that build tools and servers print.
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, links
    r"|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]"  # charsets, other two-byte escapes
)


def strip_ansi(text: str) -> str:
    """`text` without terminal escape codes: an error is read in a log, not on a tty."""
    return ANSI.sub("", text)


class DcfireError(Exception):
    """Base of every error the plugin raises on purpose."""


class ConfigError(DcfireError):
    """An ini value, a CLI option or a marker argument is not valid."""


class TopologyError(DcfireError):
    """A topology or compose file is malformed; the message names file, key path and value."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.detail = message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


class UnknownName(DcfireError, KeyError):
    """A service or site asked for by name does not exist (a KeyError too, as a lookup)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TopologyErrors(TopologyError):
    """Several independent mistakes of one file, found in one pass: `errors` lists them."""

    def __init__(self, source: str, errors: Sequence[TopologyError]) -> None:
        self.errors = list(errors)
        lines = [f"{len(self.errors)} mistakes:"]
        lines += [f"  {e.path}: {e.detail}" if e.path else f"  {e.detail}" for e in self.errors]
        super().__init__(source, "", "\n".join(lines))


class EngineUnavailable(DcfireError):
    """No Docker engine could be reached (or it refused what the plugin needs)."""


class StartupError(DcfireError):
    """The system under test did not come up (build failed, a health check timed out).
    Its message quotes build output and container logs, so escape codes are removed."""

    def __init__(self, message: str) -> None:
        super().__init__(strip_ansi(message))


class FireError(DcfireError):
    """A fire could not be ignited or restored."""


class RecoveryTimeout(DcfireError, AssertionError):
    """The system did not recover within the allowed time.

    It is also an AssertionError so that pytest reports it as a test failure, not an error.
    """


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """Return ' (did you mean X?)' when a valid name is close to `value`, else ''."""
    import difflib  # only for a mistake: the plugin imports this module in every run

    close = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(valid: Iterable[str]) -> str:
    """Render the valid choices for a message: 'one of: a, b, c'."""
    names = sorted(valid)
    return "one of: " + ", ".join(names) if names else "none are defined"


def check_keywords(where: str, options: Iterable[str], valid: Sequence[str]) -> None:
    """Refuse the first keyword that is not in `valid`, with a did-you-mean."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: unknown keyword {unknown[0]!r}{did_you_mean(unknown[0], valid)}; "
            f"valid keywords: {', '.join(valid)}"
        )


def one_target(
    where: str,
    args: Sequence[object],
    options: Iterable[str],
    keywords: Sequence[str],
    valid: Sequence[str],
    ask: str,
    kind: str,
) -> str:
    """The one site or service a fault marker names (brownout, flaky, clock), checked:
    keywords first, then exactly one name (`ask` says what to name), then that it exists."""
    check_keywords(where, options, keywords)
    if len(args) != 1 or not isinstance(args[0], str):
        raise ConfigError(f"{where}: {ask}; {one_of(valid)}")
    if args[0] not in valid:
        raise unknown_name(where, kind, args[0], valid)
    return args[0]


def unknown_name(where: str, kind: str, value: object, valid: Sequence[str]) -> ConfigError:
    """`<where>: unknown <kind> 'x' (did you mean 'y'?); valid <kind>s: ...`."""
    return ConfigError(
        f"{where}: unknown {kind} {value!r}{did_you_mean(str(value), valid)}; "
        f"valid{' sites' if kind == 'site' else ''}: "
        f"{', '.join(valid) or '(no topology configured)'}"
    )
