"""Validation shared by both topology readers (our YAML and the compose subset): the typed
readers of each value (names, ports, durations, sizes, build contexts, argv), and
`assemble()`, which checks what spans services (sites, instance names, dependencies, cycles)
and builds the `Topology`.

Every problem becomes a `TopologyError` naming the file, the key path, the value and what
would be valid. A `Context` collects them: a reader checks each independent part inside
`ctx.collect()`, so one pass reports every mistake of a file at once (`ctx.raise_collected()`
raises them together), instead of the first one per run.
"""

from __future__ import annotations

import datetime
import math
import re
import shlex
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pytest_dcfire.errors import TopologyError, TopologyErrors, did_you_mean, one_of
from pytest_dcfire.topology.model import (
    CLOCK_MODES,
    DEFAULT_POOL_MB,
    NAME_PATTERN,
    Build,
    HealthCheck,
    Latency,
    Link,
    Service,
    Site,
    Topology,
    Volume,
    Wan,
)
from pytest_dcfire.topology.wiring import find_links

MIN_STORAGE_MB = 16
MAX_STORAGE_MB = 1024 * 1024
#: How often health is polled when the file does not say (the model's default).
DEFAULT_POLL_SECONDS = HealthCheck("tcp").interval

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_@-]+$")
_ENV_NAME = re.compile(r"^[^=\s\x00]+$")
_PORT_TEXT = re.compile(r"^[0-9]{1,6}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][^\s\x00]*$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)([iI]?[bB])?\s*$")
_SIZE_UNITS_MB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}
_REMOTE_CONTEXT = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)", re.IGNORECASE)


# -- shared validation helpers (also used by the compose reader) ----------------------------


@dataclass(frozen=True)
class Context:
    """Where errors point: the file name, and the directory relative paths resolve against;
    and the mistakes found so far in parts checked with `collect()`."""

    source: str
    base_dir: Path
    errors: list[TopologyError] = field(default_factory=list, compare=False)

    def fail(self, path: str, message: str) -> NoReturn:
        raise TopologyError(self.source, path, message)

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Check one independent part: a mistake in it is kept, and the reader goes on with
        the next part (a later pass over what depends on it is skipped by the caller)."""
        try:
            yield
        except TopologyErrors as exc:
            for error in exc.errors:
                self._keep(error)
        except TopologyError as exc:
            self._keep(exc)

    def _keep(self, error: TopologyError) -> None:
        # One mistake per key: a value already refused is not refused again by a later check.
        if not error.path or all(error.path != e.path for e in self.errors):
            self.errors.append(error)

    def raise_collected(self) -> None:
        """Raise what `collect()` kept: the one mistake as it is, several as one error."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise TopologyErrors(self.source, self.errors)


def key_path(path: str, key: object) -> str:
    """`services.db`, or `labels["dcfire.site"]` for keys that are not plain words."""
    if isinstance(key, str) and _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{show(key)}]"


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def show(value: object) -> str:
    """A short repr that never fails (3.11 refuses to print ints of more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "<a very large integer>"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57]) + "..."
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(value: object) -> str:
    """Name a value's type for messages: `a list`, `a string ('x')`, `an integer (5)`."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({show(value)})"
    if isinstance(value, float):
        return f"a number ({show(value)})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value})"
    if isinstance(value, (set, frozenset)):
        return "a set"
    return f"a {type(value).__name__}"


def as_mapping(ctx: Context, value: object, path: str, what: str = "a mapping") -> dict[str, Any]:
    """`value` as a mapping with string keys."""
    if not isinstance(value, dict):
        ctx.fail(path, f"expected {what}, found {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            ctx.fail(key_path(path, key), f"keys must be strings, found {describe(key)}")
    return value


def as_list(ctx: Context, value: object, path: str, what: str = "a list") -> list[Any]:
    if not isinstance(value, list):
        ctx.fail(path, f"expected {what}, found {describe(value)}")
    return value


def as_str(ctx: Context, value: object, path: str, what: str = "a string") -> str:
    if not isinstance(value, str):
        ctx.fail(path, f"expected {what}, found {describe(value)}")
    if "\x00" in value:
        ctx.fail(path, "contains a NUL character")
    return value


def as_name(ctx: Context, value: object, path: str, kind: str) -> str:
    """A site, service or volume name: it reaches container names and helper commands."""
    name = as_str(ctx, value, path, f"a {kind} name (a string)")
    if not NAME_PATTERN.match(name):
        hint = (
            "; '@' is reserved for instance names (svc@site)"
            if "@" in name and kind == "service"
            else ""
        )
        ctx.fail(
            path,
            f"{show(name)} is not a valid {kind} name: names reach container names and "
            "commands, so use 1-63 letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit{hint}",
        )
    return name


def check_keys(
    ctx: Context,
    mapping: Mapping[str, object],
    path: str,
    allowed: Collection[str],
    hints: Mapping[str, str] | None = None,
) -> None:
    """Refuse keys outside `allowed` (extension keys `x-*` are always allowed and ignored),
    every one of them at once."""
    inner = Context(ctx.source, ctx.base_dir)
    for key in mapping:
        if key in allowed or key.startswith("x-"):
            continue
        with inner.collect():
            if hints and key in hints:
                ctx.fail(key_path(path, key), hints[key])
            where = f"; {one_of(allowed)}" if allowed else ""
            ctx.fail(path, f"unknown key {show(key)}{did_you_mean(key, allowed)}{where}")
    inner.raise_collected()


def scalar_text(ctx: Context, value: object, path: str, what: str = "value") -> str:
    """A string, number or boolean as the string a container sees (compose style)."""
    if isinstance(value, str):
        return as_str(ctx, value, path)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 64:
            ctx.fail(path, f"{what} is too large a number; quote it if you mean it")
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    ctx.fail(path, f"expected a string, number or boolean {what}, found {describe(value)}")


def parse_argv(ctx: Context, value: object, path: str) -> tuple[str, ...]:
    """An argv list, or a string split the way a shell would (never run by one)."""
    if isinstance(value, str):
        text = as_str(ctx, value, path)
        try:
            return tuple(shlex.split(text))
        except ValueError as exc:
            ctx.fail(path, f"cannot split {show(text)} into arguments: {exc}")
    if isinstance(value, list):
        argv = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                ctx.fail(
                    index_path(path, index),
                    f"expected a string argument, found {describe(item)}",
                )
            argv.append(scalar_text(ctx, item, index_path(path, index), "argument"))
        return tuple(argv)
    ctx.fail(path, f"expected a list of arguments or a string, found {describe(value)}")


def process_fields(ctx: Context, svc: Mapping[str, Any], path: str) -> dict[str, Any]:
    """`command`, `entrypoint` and `environment`: read the same way in both file formats."""
    fields: dict[str, Any] = {"command": None, "entrypoint": None, "environment": ()}
    for key in ("command", "entrypoint"):
        if svc.get(key) is not None:
            fields[key] = parse_argv(ctx, svc[key], key_path(path, key))
    if svc.get("environment") is not None:
        fields["environment"] = parse_pairs(ctx, svc["environment"], key_path(path, "environment"))
    return fields


def parse_pairs(
    ctx: Context, value: object, path: str, what: str = "variable"
) -> tuple[tuple[str, str], ...]:
    """`environment` or build `args`: a mapping, or a list of `KEY=value` strings."""
    pairs: dict[str, str] = {}
    no_value = (
        "has no value: pytest-dcfire does not pass the host's environment through, so that "
        "runs are repeatable; give a value ('' for empty)"
    )
    if isinstance(value, dict):
        for key, item in as_mapping(ctx, value, path).items():
            item_path = key_path(path, key)
            _env_name(ctx, key, item_path, what)
            if item is None:
                ctx.fail(item_path, f"{key} {no_value}")
            pairs[key] = scalar_text(ctx, item, item_path, what)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            item_path = index_path(path, index)
            text = as_str(ctx, item, item_path, f"a string KEY=value, a {what}")
            key, sep, text_value = text.partition("=")
            _env_name(ctx, key, item_path, what)
            if not sep:
                ctx.fail(item_path, f"{key} {no_value}")
            if key in pairs:
                ctx.fail(item_path, f"{what} {key} is set twice")
            pairs[key] = text_value
    else:
        ctx.fail(
            path, f"expected a mapping or a list of KEY=value strings, found {describe(value)}"
        )
    return tuple(pairs.items())


def _env_name(ctx: Context, name: str, path: str, what: str) -> None:
    if not _ENV_NAME.match(name):
        ctx.fail(path, f"{show(name)} is not a valid {what} name (no '=', spaces or NUL)")


def parse_port(ctx: Context, value: object, path: str) -> int:
    """A container port: 5432, "5432" or "5432/tcp"."""
    if isinstance(value, bool):
        ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
    if isinstance(value, int):
        port = value
    elif isinstance(value, str):
        number, _, protocol = value.strip().partition("/")
        if protocol and protocol.lower() != "tcp":
            ctx.fail(path, f"only TCP ports are supported, found {show(value)}")
        if not _PORT_TEXT.match(number):
            ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
        port = int(number)
    else:
        ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
    if not 1 <= port <= 65535:
        ctx.fail(path, f"port {show(port)} is out of range (1-65535)")
    return port


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (`1m30s`, `500ms`, `2h`), or None if it is not one."""
    text = text.strip()
    if not text:
        return None
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) and math.isfinite(total) else None


def parse_seconds(ctx: Context, value: object, path: str, allow_zero: bool = False) -> float:
    """Seconds: a number, or a duration string like `30s` or `1m30s`."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_big = isinstance(value, int) and value.bit_length() > 64
        seconds = math.inf if too_big else float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    if seconds is None or not math.isfinite(seconds):
        ctx.fail(
            path,
            f"expected seconds (a number, or a duration like 30s or 1m30s), found "
            f"{describe(value)}",
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        ctx.fail(path, f"must be {'at least' if allow_zero else 'more than'} 0 seconds")
    return seconds


def parse_storage(ctx: Context, value: object, path: str) -> int:
    """A pool size in MiB: an integer (MiB) or a size string (`512M`, `1G`, `1.5GiB`)."""
    megabytes: float
    if isinstance(value, int) and not isinstance(value, bool):
        megabytes = float(value) if value.bit_length() <= 64 else math.inf
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        number, unit, suffix = match.groups()
        if not unit and suffix:  # plain bytes: "512B"
            megabytes = float(number) / (1024 * 1024)
        else:
            megabytes = float(number) * _SIZE_UNITS_MB[unit.lower()]
    else:
        ctx.fail(
            path,
            f"expected a size (MiB as an integer, or a string like 512M or 1G), found "
            f"{describe(value)}",
        )
    if megabytes < MIN_STORAGE_MB:
        ctx.fail(path, f"storage must be at least {MIN_STORAGE_MB} MiB, found {show(value)}")
    if not megabytes <= MAX_STORAGE_MB:
        ctx.fail(path, f"storage must be at most 1 TiB, found {show(value)}")
    return math.ceil(megabytes)


def parse_sites(ctx: Context, value: object, path: str) -> tuple[Site, ...]:
    """`[a, b]`, or `{a: {storage: 512M}, b: {}}`."""
    sites: list[Site] = []
    if isinstance(value, list):
        first: dict[str, int] = {}
        for index, item in enumerate(value):
            item_path = index_path(path, index)
            name = as_name(ctx, item, item_path, "site")
            if name in first:
                ctx.fail(
                    item_path,
                    f"duplicate site {name!r} (already at {index_path(path, first[name])})",
                )
            first[name] = index
            sites.append(Site(name))
    elif isinstance(value, dict):
        for name, options in as_mapping(ctx, value, path).items():
            site_path = key_path(path, name)
            as_name(ctx, name, site_path, "site")
            if options is None:
                sites.append(Site(name))
                continue
            opts = as_mapping(ctx, options, site_path, "a mapping of site options")
            check_keys(ctx, opts, site_path, ("storage",))
            storage = DEFAULT_POOL_MB
            if opts.get("storage") is not None:
                storage = parse_storage(ctx, opts["storage"], key_path(site_path, "storage"))
            sites.append(Site(name, storage_mb=storage))
    else:
        ctx.fail(
            path,
            "expected a list of site names or a mapping of site name to options, found "
            f"{describe(value)}",
        )
    if not sites:
        ctx.fail(path, "no sites: name at least one data center, e.g. [pangyo, ansan]")
    return tuple(sites)


def parse_site_ref(ctx: Context, value: object, path: str) -> tuple[tuple[str, ...], bool]:
    """A service's `site`: a name (one instance), or a list (one `svc@site` instance each)."""
    if isinstance(value, list):
        if not value:
            ctx.fail(path, "empty list of sites: name at least one")
        names: list[str] = []
        for index, item in enumerate(value):
            name = as_name(ctx, item, index_path(path, index), "site")
            if name in names:
                ctx.fail(
                    index_path(path, index),
                    f"site {name!r} is listed twice: two instances would be called the same",
                )
            names.append(name)
        return tuple(names), True
    if isinstance(value, str):
        return (as_name(ctx, value, path, "site"),), False
    ctx.fail(path, f"expected a site name or a list of site names, found {describe(value)}")


def parse_image(ctx: Context, value: object, path: str) -> str:
    image = as_str(ctx, value, path, "an image reference (a string)")
    if not _IMAGE.match(image):
        ctx.fail(path, f"{show(image)} is not an image reference (e.g. postgres:16)")
    return image


def parse_build(ctx: Context, value: object, path: str, context_required: bool = True) -> Build:
    """A build context (a directory relative to the file), with optional dockerfile and args."""
    dockerfile: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    if isinstance(value, str):
        context, context_path = value, path
    elif isinstance(value, dict):
        build = as_mapping(ctx, value, path)
        check_keys(ctx, build, path, ("context", "dockerfile", "args"))
        context_path = key_path(path, "context")
        if build.get("context") is None:
            if context_required:
                ctx.fail(path, "missing key 'context': the directory to build, e.g. ./db")
            context = "."
        else:
            context = build["context"]
        if build.get("dockerfile") is not None:
            dockerfile = as_str(ctx, build["dockerfile"], key_path(path, "dockerfile"))
            if not dockerfile:
                ctx.fail(key_path(path, "dockerfile"), "empty dockerfile name")
        if build.get("args") is not None:
            args = parse_pairs(ctx, build["args"], key_path(path, "args"), "build arg")
    else:
        ctx.fail(
            path,
            f"expected a directory (a string) or a mapping with context, dockerfile and args, "
            f"found {describe(value)}",
        )
    context = as_str(ctx, context, context_path, "a directory (a string)")
    if not context:
        ctx.fail(context_path, "empty build context: give a directory, e.g. ./db")
    if _REMOTE_CONTEXT.match(context):
        ctx.fail(context_path, "remote build contexts are not supported: give a local directory")
    try:
        directory = (ctx.base_dir / context).resolve()
        if not directory.is_dir():
            reason = "is not a directory" if directory.exists() else "does not exist"
            ctx.fail(context_path, f"build context {context!r} {reason} (looked at {directory})")
        if dockerfile is not None:
            if not (directory / dockerfile).is_file():
                ctx.fail(
                    key_path(path, "dockerfile"),
                    f"no such file {dockerfile!r} in the build context {directory}",
                )
        elif not any((directory / name).is_file() for name in ("Dockerfile", "dockerfile")):
            ctx.fail(
                context_path,
                f"no Dockerfile in the build context {directory}; add one, or name it with "
                "`dockerfile:`",
            )
    except (OSError, ValueError, RuntimeError) as exc:
        ctx.fail(context_path, f"cannot use build context {show(context)}: {exc}")
    return Build(context=str(directory), dockerfile=dockerfile, args=args)


def parse_mount_path(ctx: Context, value: object, path: str) -> str:
    mount = as_str(ctx, value, path, "an absolute mount path (a string)")
    if not mount.startswith("/"):
        ctx.fail(path, f"mount path {show(mount)} is not absolute (it must start with /)")
    if mount.rstrip("/") == "":
        ctx.fail(path, "cannot mount a volume over /")
    if ":" in mount or "," in mount:
        ctx.fail(path, f"mount path {show(mount)} must not contain ':' or ','")
    return mount


def check_mounts(ctx: Context, volumes: Sequence[tuple[Volume, str]]) -> tuple[Volume, ...]:
    """Refuse two volumes on one mount path, or one volume mounted twice."""
    mounts: dict[str, str] = {}
    names: dict[str, str] = {}
    for volume, path in volumes:
        if volume.mount.rstrip("/") in mounts:
            ctx.fail(
                path,
                f"{volume.mount} is already mounted (at {mounts[volume.mount.rstrip('/')]})",
            )
        if volume.name in names:
            ctx.fail(
                path, f"volume {volume.name!r} is mounted twice (also at {names[volume.name]})"
            )
        mounts[volume.mount.rstrip("/")] = path
        names[volume.name] = path
    return tuple(volume for volume, _ in volumes)


def check_ports(ctx: Context, ports: Sequence[tuple[int, str]], dedupe: bool) -> tuple[int, ...]:
    """Refuse (or, for compose, merge) a container port listed twice."""
    seen: dict[int, str] = {}
    for port, path in ports:
        if port in seen and not dedupe:
            ctx.fail(path, f"port {port} is listed twice (also at {seen[port]})")
        seen.setdefault(port, path)
    return tuple(seen)


@dataclass(frozen=True)
class DependencySpec:
    """One `depends_on` entry as written: `ref` (a service or an instance), its key path,
    and the options of the mapping form."""

    ref: str
    path: str
    #: Needed to start, not to keep running: the dependent fails over when it is lost.
    failover: bool = False
    #: `site: same`: each instance needs the instance of `ref` in its own site.
    same_site: bool = False


#: The options of a dependency in the mapping form of `depends_on` (our format).
DEPENDENCY_KEYS = ("condition", "failover", "site")
#: `condition:` values: a start waits for the dependency's health check either way.
DEPENDENCY_CONDITIONS = ("healthy", "started")


def depends_list(ctx: Context, value: object, path: str) -> tuple[DependencySpec, ...]:
    """A list of service (`db`) or instance (`db@pangyo`) names, or a mapping of name to
    options (`{db: {failover: true, site: same}}`), with each one's key path."""
    if isinstance(value, dict):
        deps = []
        inner = Context(ctx.source, ctx.base_dir)
        for ref, options in as_mapping(ctx, value, path).items():
            ref_path = key_path(path, ref)
            with inner.collect():
                deps.append(
                    dependency_options(ctx, ref, options, ref_path, DEPENDENCY_KEYS, "condition")
                )
        inner.raise_collected()
        return tuple(deps)
    items = as_list(ctx, value, path, "a list of service names, or a mapping of name to options")
    inner = Context(ctx.source, ctx.base_dir)
    deps = []
    for index, item in enumerate(items):
        with inner.collect():
            name = _dependency_name(ctx, item, index_path(path, index))
            deps.append(DependencySpec(name, index_path(path, index)))
    inner.raise_collected()
    return tuple(deps)


def dependency_options(
    ctx: Context,
    ref: str,
    options: object,
    path: str,
    allowed: Collection[str],
    condition_key: str | None,
) -> DependencySpec:
    """`{condition: healthy, failover: true, site: same}` (every key optional)."""
    if options is None:
        return DependencySpec(ref, path)
    opts = as_mapping(ctx, options, path, "a mapping like {failover: true} or {site: same}")
    check_keys(ctx, opts, path, allowed)
    if condition_key is not None and opts.get(condition_key) is not None:
        condition = opts[condition_key]
        if condition not in DEPENDENCY_CONDITIONS:
            shown = condition if isinstance(condition, str) else ""
            ctx.fail(
                key_path(path, condition_key),
                f"unknown condition {describe(condition)}"
                f"{did_you_mean(shown, DEPENDENCY_CONDITIONS)}; {one_of(DEPENDENCY_CONDITIONS)} "
                "(a start waits for the dependency's health check either way)",
            )
    failover = opts.get("failover", False)
    if not isinstance(failover, bool):
        ctx.fail(
            key_path(path, "failover"),
            f"expected true or false, found {describe(failover)} (true: needed to start, not "
            "to keep running; the dependent fails over when it is lost)",
        )
    site = opts.get("site")
    if site is not None and site != "same":
        ctx.fail(
            key_path(path, "site"),
            f"expected `same` (each instance needs the instance of {ref} in its own site), "
            f"found {describe(site)}",
        )
    return DependencySpec(ref, path, failover=failover, same_site=site == "same")


def _dependency_name(ctx: Context, value: object, path: str) -> str:
    return as_str(ctx, value, path, "a service name (a string)")


# -- assembling the model -------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    """One service as a reader understood it, before instances and dependencies are checked."""

    name: str
    path: str
    sites: tuple[str, ...]
    site_path: str
    #: True for `site: [a, b]`: one instance per site, named `name@site`.
    per_site: bool
    image: str | None = None
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    volumes: tuple[Volume, ...] = ()
    healthcheck: HealthCheck | None = None
    depends_on: tuple[DependencySpec, ...] = ()
    #: `clock:` of the service; None: the file's default (top-level `clock:`, else host).
    clock: str | None = None

    def instance_names(self) -> tuple[str, ...]:
        if self.per_site:
            return tuple(f"{self.name}@{site}" for site in self.sites)
        return (self.name,)


def assemble(
    ctx: Context,
    sites: Sequence[Site],
    specs: Sequence[ServiceSpec],
    name: str | None = None,
    wan: Wan | None = None,
    broken: Collection[str] = (),
    broken_depends: Mapping[str, Sequence[DependencySpec]] | None = None,
    clock: str = "host",
) -> Topology:
    """Check what spans services (sites, instance names, dependencies, cycles); build it.

    Every mistake is collected and raised together. `broken` names services that had
    mistakes of their own (left out of `specs`): references to them are not checked.
    `broken_depends` holds the dependencies those services declared: a name no service of
    the file has is reported with their other mistakes, not on the next run."""
    site_names = [site.name for site in sites]
    for spec in specs:
        for index, site in enumerate(spec.sites):
            if site not in site_names:
                with ctx.collect():
                    ctx.fail(
                        index_path(spec.site_path, index) if spec.per_site else spec.site_path,
                        f"unknown site {site!r}{did_you_mean(site, site_names)}; "
                        f"{one_of(site_names)}",
                    )

    owner: dict[str, str] = {}  # instance name -> base
    network_names: dict[str, str] = {}  # DNS name on the topology network -> instance
    for spec in specs:
        for instance in spec.instance_names():
            dns = instance.replace("@", ".")
            with ctx.collect():
                if instance in owner:
                    ctx.fail(spec.path, f"duplicate service instance {instance!r}")
                if dns in network_names:
                    ctx.fail(
                        spec.path,
                        f"instance {instance!r} and {network_names[dns]!r} would both be "
                        f"called {dns!r} on the network; rename one",
                    )
            owner[instance] = spec.name
            network_names.setdefault(dns, instance)

    bases = {spec.name: spec for spec in specs}
    edges: dict[str, list[tuple[str, str]]] = {}  # base -> [(target base, key path)]
    for spec in specs:
        seen: dict[str, str] = {}
        edges[spec.name] = []
        for dep in spec.depends_on:
            ref, ref_path = dep.ref, dep.path
            if ref.partition("@")[0] in broken:
                continue  # its own mistakes are reported; what it would be is unknown
            with ctx.collect():
                target = ref if ref in bases else owner.get(ref)
                if target is None:
                    ctx.fail(ref_path, _unknown_dependency(ref, spec.name, specs))
                if target == spec.name:
                    what = "itself" if ref == spec.name else f"its own instance {ref!r}"
                    ctx.fail(ref_path, f"{spec.name} cannot depend on {what}")
                if ref in seen:
                    ctx.fail(ref_path, f"{ref!r} is listed twice (also at {seen[ref]})")
                seen[ref] = ref_path
                edges[spec.name].append((target, ref_path))
                if dep.same_site:
                    _check_same_site(ctx, spec, dep, bases)
    names = [*bases, *(name for name in broken if name not in bases)]
    for own, deps in (broken_depends or {}).items():
        for dep in deps:
            if dep.ref.partition("@")[0] not in names:
                others = [name for name in names if name != own]
                with ctx.collect():
                    ctx.fail(
                        dep.path,
                        f"unknown service {dep.ref!r}{did_you_mean(dep.ref, others)}; "
                        f"{one_of(others)}",
                    )
    with ctx.collect():
        _check_cycles(ctx, [spec.name for spec in specs], edges)
    ctx.raise_collected()

    services: list[Service] = []
    for spec in specs:
        for site, instance in zip(spec.sites, spec.instance_names(), strict=True):
            services.append(
                Service(
                    name=instance,
                    base=spec.name,
                    site=site,
                    image=spec.image,
                    build=spec.build,
                    command=spec.command,
                    entrypoint=spec.entrypoint,
                    environment=spec.environment,
                    ports=spec.ports,
                    volumes=spec.volumes,
                    depends_on=tuple(_resolve(dep, site) for dep in spec.depends_on),
                    healthcheck=spec.healthcheck,
                    failover=tuple(_resolve(dep, site) for dep in spec.depends_on if dep.failover),
                    clock=spec.clock or clock,
                )
            )
    paths = {inst: spec.path for spec in specs for inst in spec.instance_names()}
    links: tuple[Link, ...] = ()
    with ctx.collect():
        links = find_links(services, paths, ctx.fail, ctx.collect)
    ctx.raise_collected()
    return Topology(
        source=ctx.source,
        sites=tuple(sites),
        services=tuple(services),
        name=name,
        links=links,
        wan=wan or Wan(),
    )


def parse_clock(ctx: Context, value: object, path: str) -> str:
    """`clock: host | controllable` (per service, or at the top level for every service)."""
    if not isinstance(value, str) or value not in CLOCK_MODES:
        ctx.fail(
            path,
            f"expected {' or '.join(CLOCK_MODES)}, found {describe(value)} (controllable: "
            "libfaketime is preloaded so that dcfire.clock can move this service's wall clock)",
        )
    return value


def _resolve(dep: DependencySpec, site: str) -> str:
    """The name an instance in `site` depends on: `db@<site>` for `site: same`."""
    return f"{dep.ref}@{site}" if dep.same_site else dep.ref


def _check_same_site(
    ctx: Context, spec: ServiceSpec, dep: DependencySpec, bases: Mapping[str, ServiceSpec]
) -> None:
    """`site: same` pairs instances site by site: both sides must run one per site, and the
    dependency in every site of the dependent."""
    path = key_path(dep.path, "site")
    if not spec.per_site:
        ctx.fail(
            path,
            f"`site: same` needs {spec.name} to run one instance per site (`site: [a, b]`); "
            f"it runs once, in {spec.sites[0]}: depend on {dep.ref!r} or on one instance",
        )
    target = bases.get(dep.ref)
    if target is None or not target.per_site:
        what = "an instance" if target is None else f"one instance, in {target.sites[0]}"
        ctx.fail(
            path,
            f"`site: same` needs a service with one instance per site; {dep.ref!r} is {what}: "
            "depend on it without `site: same`",
        )
    missing = [site for site in spec.sites if site not in target.sites]
    if missing:
        ctx.fail(
            path,
            f"{dep.ref} has no instance in {', '.join(missing)} (it runs in "
            f"{', '.join(target.sites)}), so {', '.join(f'{spec.name}@{m}' for m in missing)} "
            "would have nothing to depend on",
        )


WAN_KEYS = ("jitter", "latency", "pairs")


def parse_wan(ctx: Context, value: object, path: str, site_names: Sequence[str]) -> Wan:
    """`{latency: 20, jitter: 2, pairs: [{sites: [a, b], latency: 35}]}` (milliseconds)."""
    wan = as_mapping(ctx, value, path, "a mapping like {latency: 20, jitter: 2}")
    check_keys(ctx, wan, path, WAN_KEYS)
    default = _latency(ctx, wan, path)
    pairs: list[tuple[frozenset[str], Latency]] = []
    seen: dict[frozenset[str], str] = {}
    if wan.get("pairs") is not None:
        pairs_path = key_path(path, "pairs")
        items = as_list(ctx, wan["pairs"], pairs_path, "a list of {sites: [a, b], latency: ms}")
        for index, item in enumerate(items):
            item_path = index_path(pairs_path, index)
            pair = as_mapping(ctx, item, item_path, "a mapping like {sites: [a, b], latency: 35}")
            check_keys(ctx, pair, item_path, ("jitter", "latency", "sites"))
            sites_path = key_path(item_path, "sites")
            if pair.get("sites") is None:
                ctx.fail(item_path, "missing `sites: [a, b]`, the two sites of the pair")
            names = as_list(ctx, pair["sites"], sites_path, "a list of two site names")
            if len(names) != 2:
                ctx.fail(sites_path, f"a pair is two sites, found {len(names)}")
            for i, site in enumerate(names):
                if site not in site_names:
                    ctx.fail(
                        index_path(sites_path, i),
                        f"unknown site {show(site)}{did_you_mean(str(site), site_names)}; "
                        f"{one_of(site_names)}",
                    )
            if names[0] == names[1]:
                ctx.fail(sites_path, "a pair is two different sites (no WAN inside one site)")
            key = frozenset(names)
            if key in seen:
                ctx.fail(item_path, f"the pair {names[0]}/{names[1]} is also at {seen[key]}")
            seen[key] = item_path
            pairs.append((key, _latency(ctx, pair, item_path)))
    return Wan(default, tuple(pairs))


def _latency(ctx: Context, mapping: Mapping[str, object], path: str) -> Latency:
    values: dict[str, float] = {}
    for key in ("latency", "jitter"):
        raw = mapping.get(key)
        if raw is None:
            values[key] = 0.0
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 60_000:
            ctx.fail(
                key_path(path, key),
                f"expected milliseconds between 0 and 60000, found {show(raw)}",
            )
        values[key] = float(raw)
    return Latency(values["latency"], values["jitter"])


def _unknown_dependency(ref: str, own: str, specs: Sequence[ServiceSpec]) -> str:
    valid: list[str] = []
    for spec in specs:
        if spec.name == own:
            continue
        valid.append(spec.name)
        if spec.per_site:
            valid.extend(spec.instance_names())
    base, at, site = ref.partition("@")
    for spec in specs:
        if at and spec.name == base and not spec.per_site:
            return (
                f"unknown service instance {ref!r}: {base} runs one instance, called {base!r} "
                f"(a list of sites, `site: [{site}, ...]`, makes {base}@<site> instances)"
            )
        if at and spec.name == base and spec.per_site:
            sites = ", ".join(spec.sites)
            return (
                f"unknown service instance {ref!r}{did_you_mean(ref, spec.instance_names())}: "
                f"{base} runs in {sites}"
            )
    return f"unknown service {ref!r}{did_you_mean(ref, valid)}; {one_of(valid)}"


def _check_cycles(
    ctx: Context, order: list[str], edges: Mapping[str, list[tuple[str, str]]]
) -> None:
    """Refuse a dependency cycle, printing it (`db -> replica -> db`)."""
    remaining = set(order)
    while True:  # peel off services whose dependencies are all peeled off already
        free = {name for name in remaining if all(t not in remaining for t, _ in edges[name])}
        if not free:
            break
        remaining -= free
    if not remaining:
        return
    # Every remaining service depends on another remaining one: walk until one repeats.
    walk = [next(name for name in order if name in remaining)]
    while True:
        target = next(t for t, _ in edges[walk[-1]] if t in remaining)
        if target in walk:
            cycle = [*walk[walk.index(target) :], target]
            break
        walk.append(target)
    path = next(p for t, p in edges[cycle[0]] if t == cycle[1])
    ctx.fail(path, f"dependency cycle: {' -> '.join(cycle)}")
