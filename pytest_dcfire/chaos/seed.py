"""`--dcfire-seed N` / ini `dcfire_seed`: replay a random schedule. When given, every
`dcfire.chaos()` called without an explicit seed draws from it."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_dcfire.errors import ConfigError

OPTION_SEED = "--dcfire-seed"
INI_SEED = "dcfire_seed"
SEED_KEY = pytest.StashKey[int | None]()


def parse_seed(where: str, value: Any) -> int:
    """A seed is an integer >= 0 (an int, or its decimal text from an option)."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        return int(text)
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    raise ConfigError(f"{where} = {value!r} is not valid; give an integer >= 0, e.g. 1234")


def add_options(group: Any, parser: pytest.Parser) -> None:
    group.addoption(
        OPTION_SEED,
        dest="dcfire_seed",
        metavar="N",
        default=None,
        help="seed of every dcfire.chaos() called without one: replays the schedule a report "
        f"or a failure printed (ini: {INI_SEED}).",
    )
    parser.addini(INI_SEED, "seed of dcfire.chaos() calls without one (an integer >= 0).")


def configure(config: pytest.Config) -> None:
    """Validate the seed once (CLI beats ini); raises ConfigError naming option and value."""
    cli = config.getoption("dcfire_seed", None)
    ini = config.getini(INI_SEED)
    if cli is not None:
        seed: int | None = parse_seed(OPTION_SEED, cli)
    elif ini not in (None, ""):
        seed = parse_seed(INI_SEED, ini)
    else:
        seed = None
    config.stash[SEED_KEY] = seed


def replay_seed(config: Any) -> int | None:
    """The configured seed, or None (also for a controller made outside pytest)."""
    stash = getattr(config, "stash", None)
    return None if stash is None else stash.get(SEED_KEY, None)
