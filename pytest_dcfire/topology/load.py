"""Reading topology files into a `Topology`: our own YAML format, or a docker-compose subset.

`load_topology(path)` is the one entry point the plugin uses. The file's content picks the
reader: a document with top-level `sites` is ours; a file named like a compose file, or with
compose-only keys (`version`, `volumes`, `networks`, `x-dcfire`, ...), or whose services carry
no `site:` key, is read by `pytest_dcfire.topology.compose`. Both readers turn each service into
a `ServiceSpec` and share `assemble()`, which checks sites, dependencies and cycles once.

Every problem, whatever the input, becomes one `TopologyError` naming the file, the key path
and what would be valid; the tests fuzz this. YAML is read with `yaml.SafeLoader` only, guarded
against duplicate keys, recursive aliases and alias bombs before anything is constructed.
"""

from __future__ import annotations

import datetime
import math
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pytest_dcfire.errors import TopologyError, did_you_mean, one_of
from pytest_dcfire.topology.model import (
    DEFAULT_POOL_MB,
    NAME_PATTERN,
    Build,
    HealthCheck,
    Latency,
    Service,
    Site,
    Topology,
    Volume,
    Wan,
)

__all__ = [
    "COMPOSE_FILE_NAMES",
    "Context",
    "ServiceSpec",
    "assemble",
    "is_compose_document",
    "load_topology",
    "parse_topology",
    "process_fields",
    "read_yaml",
    "topology_from_document",
]

#: File names that are always read as compose files, whatever they contain.
COMPOSE_FILE_NAMES = frozenset(
    {"compose.yml", "compose.yaml", "docker-compose.yml", "docker-compose.yaml"}
)
#: Top-level keys only a compose file has; their presence (without `sites`) means compose.
COMPOSE_ONLY_KEYS = frozenset(
    {"version", "volumes", "networks", "configs", "secrets", "include", "models", "x-dcfire"}
)
#: A topology is a few kilobytes; anything this big is a mistake, not a topology.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: YAML nodes the document may expand to through aliases (a real file: a few thousand).
MAX_NODES = 100_000
#: Nesting deeper than this is no topology (and would exhaust the recursive composer).
MAX_DEPTH = 64
MIN_STORAGE_MB = 16
MAX_STORAGE_MB = 1024 * 1024
#: How often health is polled when the file does not say (the model's default).
DEFAULT_POLL_SECONDS = HealthCheck("tcp").interval

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_@-]+$")
_ENV_NAME = re.compile(r"^[^=\s\x00]+$")
_PORT_TEXT = re.compile(r"^[0-9]{1,6}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][^\s\x00]*$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)([iI]?[bB])?\s*$")
_SIZE_UNITS_MB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}
_REMOTE_CONTEXT = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)", re.IGNORECASE)


# -- the public entry points ----------------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Read, validate and return the topology (our format or compose) in the file `path`.

    Relative `build` contexts resolve against the file's directory.
    """
    path = Path(path)
    source = str(path)
    try:
        if path.is_dir():
            raise TopologyError(source, "", "is a directory, not a topology file")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TopologyError(source, "", "no such file") from None
    except (OSError, ValueError) as exc:
        raise TopologyError(source, "", f"cannot read the file: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TopologyError(
            source, "", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a topology file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TopologyError(
            source, "", f"not UTF-8 text (byte {exc.start}): is this the right file?"
        ) from None
    return parse_topology(text, source, path.parent)


def parse_topology(
    text: str, source: str = "<string>", base_dir: str | Path | None = None
) -> Topology:
    """Validate the YAML `text` as if read from the file `source` (which names it in errors).

    `base_dir` is where relative build contexts resolve (default: `source`'s directory).
    """
    base = Path(base_dir) if base_dir is not None else Path(source).parent
    return topology_from_document(read_yaml(text, source), source, base)


def topology_from_document(doc: object, source: str, base_dir: Path) -> Topology:
    """Validate an already parsed YAML document; pick our reader or the compose one."""
    ctx = Context(source, base_dir)
    if doc is None:
        ctx.fail(
            "",
            "the file is empty: a topology needs `sites` and `services` (or, in a compose "
            "file, `services` each labelled with its site)",
        )
    if not isinstance(doc, dict):
        ctx.fail(
            "",
            f"expected a mapping with `sites` and `services` at the top, found {describe(doc)}",
        )
    document = as_mapping(ctx, doc, "")
    if is_compose_document(document, Path(source).name):
        from pytest_dcfire.topology.compose import compose_topology

        return compose_topology(ctx, document)
    return _our_topology(ctx, document)


def is_compose_document(doc: Mapping[str, object], filename: str = "") -> bool:
    """Whether `doc` is a compose file: by name, by compose-only keys, or no `site:` keys."""
    if filename.lower() in COMPOSE_FILE_NAMES:
        return True
    if "sites" in doc:
        return False
    if any(key in doc for key in COMPOSE_ONLY_KEYS):
        return True
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        return False
    return not any(isinstance(svc, dict) and "site" in svc for svc in services.values())


# -- YAML, read safely ----------------------------------------------------------------------


class _GuardedLoader(yaml.SafeLoader):
    """`SafeLoader` that checks the node graph before constructing anything.

    PyYAML shares aliased nodes, so composing is linear in the file size; expanding them is
    not (nine nested aliases of nine make a billion strings), and a recursive alias makes an
    infinite structure. Both are refused here, as are duplicate keys (PyYAML keeps the last
    one silently, which would hide a second `db:` service).
    """

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # The composer recurses once per level: stop early rather than exhaust the stack.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                continue
            if (key.tag, key.value) in seen:
                raise yaml.composer.ComposerError(
                    "in the mapping",
                    node.start_mark,
                    f"found duplicate key {_show(key.value)}",
                    key.start_mark,
                )
            seen.add((key.tag, key.value))
        return node


def _check_expansion(root: Node) -> None:
    """Refuse recursive aliases, deep nesting and documents that expand past `MAX_NODES`."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(
                None,
                None,
                "found a recursive alias (an anchor used inside itself)",
                node.start_mark,
            )
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark
            )
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
        elif isinstance(node, MappingNode):
            for child_key, child_value in node.value:
                total += size(child_key, depth + 1) + size(child_value, depth + 1)
        if total > MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand this document to more than {MAX_NODES} nodes (a YAML alias "
                "bomb, 'billion laughs'?); refusing to expand it",
                node.start_mark,
            )
        active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def read_yaml(text: str, source: str) -> object:
    """Parse one YAML document safely; any failure is a `TopologyError` with line and column."""
    try:
        return yaml.load(text, Loader=_GuardedLoader)  # a SafeLoader subclass
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise TopologyError(
            source,
            f"line {line}, column {column}",
            f"invalid YAML: unacceptable character {chr(exc.character)!r}: {exc.reason}"
            if isinstance(exc.character, int)
            else f"invalid YAML: {exc.reason}",
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise TopologyError(source, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise TopologyError(source, "", "invalid YAML: nested too deeply") from None
    except Exception as exc:  # a constructor's ValueError (a 5000-digit int, a bad date)
        raise TopologyError(source, "", f"invalid YAML value: {exc}") from None


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> TopologyError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    context = ""
    if exc.problem and exc.context and exc.problem.startswith("but found"):
        problem = f"{exc.context}, {exc.problem}"  # "expected a single document, but found..."
    elif exc.problem and exc.context:
        context = f" ({exc.context}"
        start, problem_at = exc.context_mark, exc.problem_mark
        if start is not None and problem_at is not None and start.line != problem_at.line:
            context += f" starting at line {start.line + 1}"
        context += ")"
    if "<block end>" in problem:
        context += " (check the indentation)"
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return TopologyError(source, where, f"invalid YAML: {problem}{context}")


# -- shared validation helpers (also used by the compose reader) ----------------------------


@dataclass(frozen=True)
class Context:
    """Where errors point: the file name, and the directory relative paths resolve against."""

    source: str
    base_dir: Path

    def fail(self, path: str, message: str) -> NoReturn:
        raise TopologyError(self.source, path, message)


def key_path(path: str, key: object) -> str:
    """`services.db`, or `labels["dcfire.site"]` for keys that are not plain words."""
    if isinstance(key, str) and _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key)}]"


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _show(value: object) -> str:
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
        return f"an integer ({_show(value)})"
    if isinstance(value, float):
        return f"a number ({_show(value)})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
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
            f"{_show(name)} is not a valid {kind} name: names reach container names and "
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
    """Refuse keys outside `allowed` (extension keys `x-*` are always allowed and ignored)."""
    for key in mapping:
        if key in allowed or key.startswith("x-"):
            continue
        if hints and key in hints:
            ctx.fail(key_path(path, key), hints[key])
        where = f"; {one_of(allowed)}" if allowed else ""
        ctx.fail(path, f"unknown key {_show(key)}{did_you_mean(key, allowed)}{where}")


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
            ctx.fail(path, f"cannot split {_show(text)} into arguments: {exc}")
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
        ctx.fail(path, f"{_show(name)} is not a valid {what} name (no '=', spaces or NUL)")


def parse_port(ctx: Context, value: object, path: str) -> int:
    """A container port: 5432, "5432" or "5432/tcp"."""
    if isinstance(value, bool):
        ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
    if isinstance(value, int):
        port = value
    elif isinstance(value, str):
        number, _, protocol = value.strip().partition("/")
        if protocol and protocol.lower() != "tcp":
            ctx.fail(path, f"only TCP ports are supported, found {_show(value)}")
        if not _PORT_TEXT.match(number):
            ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
        port = int(number)
    else:
        ctx.fail(path, f"expected a port number (1-65535), found {describe(value)}")
    if not 1 <= port <= 65535:
        ctx.fail(path, f"port {_show(port)} is out of range (1-65535)")
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
        ctx.fail(path, f"storage must be at least {MIN_STORAGE_MB} MiB, found {_show(value)}")
    if not megabytes <= MAX_STORAGE_MB:
        ctx.fail(path, f"storage must be at most 1 TiB, found {_show(value)}")
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
        ctx.fail(path, f"{_show(image)} is not an image reference (e.g. postgres:16)")
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
        ctx.fail(context_path, f"cannot use build context {_show(context)}: {exc}")
    return Build(context=str(directory), dockerfile=dockerfile, args=args)


def parse_mount_path(ctx: Context, value: object, path: str) -> str:
    mount = as_str(ctx, value, path, "an absolute mount path (a string)")
    if not mount.startswith("/"):
        ctx.fail(path, f"mount path {_show(mount)} is not absolute (it must start with /)")
    if mount.rstrip("/") == "":
        ctx.fail(path, "cannot mount a volume over /")
    if ":" in mount or "," in mount:
        ctx.fail(path, f"mount path {_show(mount)} must not contain ':' or ','")
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


def depends_list(ctx: Context, value: object, path: str) -> tuple[tuple[str, str], ...]:
    """A list of service (`db`) or instance (`db@pangyo`) names, with each one's key path."""
    items = as_list(ctx, value, path, "a list of service names")
    return tuple(
        (_dependency_name(ctx, item, index_path(path, index)), index_path(path, index))
        for index, item in enumerate(items)
    )


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
    #: (reference, key path of the reference).
    depends_on: tuple[tuple[str, str], ...] = ()

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
) -> Topology:
    """Check what spans services (sites, instance names, dependencies, cycles); build it."""
    site_names = [site.name for site in sites]
    for spec in specs:
        for index, site in enumerate(spec.sites):
            if site not in site_names:
                ctx.fail(
                    index_path(spec.site_path, index) if spec.per_site else spec.site_path,
                    f"unknown site {site!r}{did_you_mean(site, site_names)}; {one_of(site_names)}",
                )

    owner: dict[str, str] = {}  # instance name -> base
    network_names: dict[str, str] = {}  # DNS name on the topology network -> instance
    for spec in specs:
        for instance in spec.instance_names():
            if instance in owner:
                ctx.fail(spec.path, f"duplicate service instance {instance!r}")
            dns = instance.replace("@", ".")
            if dns in network_names:
                ctx.fail(
                    spec.path,
                    f"instance {instance!r} and {network_names[dns]!r} would both be called "
                    f"{dns!r} on the network; rename one",
                )
            owner[instance] = spec.name
            network_names[dns] = instance

    bases = {spec.name: spec for spec in specs}
    edges: dict[str, list[tuple[str, str]]] = {}  # base -> [(target base, key path)]
    for spec in specs:
        seen: dict[str, str] = {}
        edges[spec.name] = []
        for ref, ref_path in spec.depends_on:
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
    _check_cycles(ctx, [spec.name for spec in specs], edges)

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
                    depends_on=tuple(ref for ref, _ in spec.depends_on),
                    healthcheck=spec.healthcheck,
                )
            )
    from pytest_dcfire.topology.wiring import find_links

    paths = {inst: spec.path for spec in specs for inst in spec.instance_names()}
    return Topology(
        source=ctx.source,
        sites=tuple(sites),
        services=tuple(services),
        name=name,
        links=find_links(services, paths, ctx.fail),
        wan=wan or Wan(),
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
                        f"unknown site {_show(site)}{did_you_mean(str(site), site_names)}; "
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
                f"expected milliseconds between 0 and 60000, found {_show(raw)}",
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


# -- our own format -------------------------------------------------------------------------

TOP_KEYS = ("name", "services", "sites", "wan")
SERVICE_KEYS = (
    "build",
    "command",
    "depends_on",
    "entrypoint",
    "environment",
    "healthcheck",
    "image",
    "ports",
    "site",
    "volumes",
)
HEALTH_KEYS = ("cmd", "http", "interval", "port", "tcp", "timeout")


def _compose_hint(key: str) -> str:
    return (
        f"{key!r} is a docker-compose key; this file is read as a pytest-dcfire topology "
        "(it has top-level `sites`). Use the compose file itself, with a `dcfire.site` label "
        "per service, or remove the key"
    )


def _our_topology(ctx: Context, doc: Mapping[str, object]) -> Topology:
    check_keys(ctx, doc, "", TOP_KEYS, {k: _compose_hint(k) for k in COMPOSE_ONLY_KEYS})
    if "sites" not in doc and "services" not in doc:
        ctx.fail(
            "",
            "missing keys 'sites' and 'services': a topology lists its sites (data centers) "
            "and its services, each with a site",
        )
    if "sites" not in doc:
        ctx.fail("", "missing key 'sites': list the sites (data centers), e.g. [pangyo, ansan]")
    if "services" not in doc:
        ctx.fail("", "missing key 'services': the services to start, each with a site")
    sites = parse_sites(ctx, doc["sites"], "sites")
    name = as_name(ctx, doc["name"], "name", "project") if doc.get("name") is not None else None
    services = as_mapping(ctx, doc["services"], "services", "a mapping of service name to service")
    if not services:
        ctx.fail("services", "no services: define at least one")
    site_names = [site.name for site in sites]
    specs = [
        _our_service(ctx, service, value, key_path("services", service), site_names)
        for service, value in services.items()
    ]
    wan = parse_wan(ctx, doc["wan"], "wan", site_names) if doc.get("wan") is not None else None
    return assemble(ctx, sites, specs, name, wan)


def _our_service(
    ctx: Context, name: str, value: object, path: str, site_names: Sequence[str]
) -> ServiceSpec:
    as_name(ctx, name, path, "service")
    if value is None:
        ctx.fail(path, "empty service: give it a site and an image or a build context")
    svc = as_mapping(ctx, value, path)
    compose_keys = ("labels", "restart", "networks", "deploy", "container_name", "expose")
    check_keys(ctx, svc, path, SERVICE_KEYS, {k: _compose_hint(k) for k in compose_keys})
    if svc.get("site") is None:
        ctx.fail(
            path,
            f"no site: give `site: <site>` (or a list of sites, one instance each); "
            f"{one_of(site_names)}",
        )
    sites, per_site = parse_site_ref(ctx, svc["site"], key_path(path, "site"))
    image, build = _image_or_build(ctx, svc, path)

    def given(key: str) -> bool:
        return svc.get(key) is not None

    ports: list[tuple[int, str]] = []
    if given("ports"):
        items = as_list(ctx, svc["ports"], key_path(path, "ports"), "a list of container ports")
        for index, item in enumerate(items):
            item_path = index_path(key_path(path, "ports"), index)
            ports.append((parse_port(ctx, item, item_path), item_path))
    volumes: list[tuple[Volume, str]] = []
    if given("volumes"):
        volumes_path = key_path(path, "volumes")
        mapping = as_mapping(ctx, svc["volumes"], volumes_path, "a mapping of volume name to path")
        for volume, mount in mapping.items():
            item_path = key_path(volumes_path, volume)
            as_name(ctx, volume, item_path, "volume")
            volumes.append((Volume(volume, parse_mount_path(ctx, mount, item_path)), item_path))
    return ServiceSpec(
        name=name,
        path=path,
        sites=sites,
        site_path=key_path(path, "site"),
        per_site=per_site,
        image=image,
        build=build,
        **process_fields(ctx, svc, path),
        ports=check_ports(ctx, ports, dedupe=False),
        volumes=check_mounts(ctx, volumes),
        healthcheck=_our_healthcheck(ctx, svc["healthcheck"], key_path(path, "healthcheck"))
        if given("healthcheck")
        else None,
        depends_on=depends_list(ctx, svc["depends_on"], key_path(path, "depends_on"))
        if given("depends_on")
        else (),
    )


def _image_or_build(
    ctx: Context, svc: Mapping[str, object], path: str
) -> tuple[str | None, Build | None]:
    has_image, has_build = svc.get("image") is not None, svc.get("build") is not None
    if has_image and has_build:
        ctx.fail(path, "give either `image` or `build`, not both")
    if has_image:
        return parse_image(ctx, svc["image"], key_path(path, "image")), None
    if has_build:
        return None, parse_build(ctx, svc["build"], key_path(path, "build"))
    ctx.fail(
        path,
        "no image: give `image:` (an image on the engine, e.g. postgres:16) or `build:` (a "
        "directory with a Dockerfile, e.g. ./db)",
    )


def _our_healthcheck(ctx: Context, value: object, path: str) -> HealthCheck:
    """`{tcp: PORT}`, `{cmd: [...]}` or `{http: /path, port: PORT}`; `timeout`, `interval`."""
    check = as_mapping(ctx, value, path, "a mapping like {tcp: 5432}")
    check_keys(ctx, check, path, HEALTH_KEYS)
    kinds = [kind for kind in ("tcp", "cmd", "http") if kind in check]
    if not kinds:
        ctx.fail(
            path,
            "say how to check: {tcp: PORT}, {cmd: [...]} or {http: /path, port: PORT}",
        )
    if len(kinds) > 1:
        ctx.fail(path, f"give one of tcp, cmd and http, not {' and '.join(kinds)}")
    timing: dict[str, float] = {}
    for key in ("timeout", "interval"):
        if check.get(key) is not None:
            timing[key] = parse_seconds(ctx, check[key], key_path(path, key))
    kind = kinds[0]
    if kind != "http" and "port" in check:
        ctx.fail(key_path(path, "port"), f"`port` goes with `http`; {kind}: says it all")
    if kind == "tcp":
        health = HealthCheck("tcp", port=parse_port(ctx, check["tcp"], key_path(path, "tcp")))
    elif kind == "cmd":
        cmd = parse_argv(ctx, check["cmd"], key_path(path, "cmd"))
        if not cmd:
            ctx.fail(key_path(path, "cmd"), "empty command")
        health = HealthCheck("cmd", cmd=cmd)
    else:
        url_path = as_str(ctx, check["http"], key_path(path, "http"), "a URL path like /health")
        if not url_path.startswith("/") or any(c.isspace() for c in url_path):
            ctx.fail(
                key_path(path, "http"),
                f"expected a URL path starting with / (like /health), found {_show(url_path)}",
            )
        if "port" not in check:
            ctx.fail(path, "http: needs `port: PORT`, the container port to send the GET to")
        port = parse_port(ctx, check["port"], key_path(path, "port"))
        health = HealthCheck("http", port=port, path=url_path)
    return replace(
        health,
        timeout=timing.get("timeout", health.timeout),
        interval=timing.get("interval", health.interval),
    )
