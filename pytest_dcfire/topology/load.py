"""Reading topology files into a `Topology`: our own YAML format, or a docker-compose subset.

`load_topology(path)` is the one entry point the plugin uses. The file's content picks the
reader: a document with top-level `sites` is ours; a file named like a compose file, or with
compose-only keys (`version`, `volumes`, `networks`, `x-dcfire`, ...), or whose services carry
no `site:` key, is read by `pytest_dcfire.topology.compose`. Both readers turn each service into
a `ServiceSpec` with the helpers of `pytest_dcfire.topology.validate`, and share its
`assemble()`, which checks sites, dependencies and cycles once.

Every problem, whatever the input, becomes a `TopologyError` naming the file, the key path
and what would be valid (every mistake of a file at once: `TopologyErrors`); the tests fuzz
this. YAML is read with `yaml.SafeLoader` only, guarded
against duplicate keys, recursive aliases and alias bombs before anything is constructed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pytest_dcfire.errors import TopologyError, did_you_mean, one_of
from pytest_dcfire.topology.compose import compose_topology
from pytest_dcfire.topology.model import Build, HealthCheck, Site, Topology, Volume
from pytest_dcfire.topology.validate import (
    Context,
    DependencySpec,
    ServiceSpec,
    as_list,
    as_mapping,
    as_name,
    as_str,
    assemble,
    check_keys,
    check_mounts,
    check_ports,
    depends_list,
    describe,
    index_path,
    key_path,
    parse_argv,
    parse_build,
    parse_clock,
    parse_image,
    parse_mount_path,
    parse_port,
    parse_seconds,
    parse_site_ref,
    parse_sites,
    parse_wan,
    process_fields,
    show,
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

_MERGE_TAG = "tag:yaml.org,2002:merge"


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
                    f"found duplicate key {show(key.value)}",
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


# -- our own format -------------------------------------------------------------------------

TOP_KEYS = ("clock", "name", "services", "sites", "wan")
SERVICE_KEYS = (
    "build",
    "clock",
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
HEALTH_KEYS = ("budget", "cmd", "http", "interval", "port", "tcp", "timeout")


def _compose_hint(key: str) -> str:
    return (
        f"{key!r} is a docker-compose key; this file is read as a pytest-dcfire topology "
        "(it has top-level `sites`). Use the compose file itself, with a `dcfire.site` label "
        "per service, or remove the key"
    )


def _our_topology(ctx: Context, doc: Mapping[str, object]) -> Topology:
    """Check every part of the file, collecting each mistake; raise them all at once."""
    with ctx.collect():
        check_keys(ctx, doc, "", TOP_KEYS, {k: _compose_hint(k) for k in COMPOSE_ONLY_KEYS})
    if "sites" not in doc and "services" not in doc:
        ctx.fail(
            "",
            "missing keys 'sites' and 'services': a topology lists its sites (data centers) "
            "and its services, each with a site",
        )

    def misspelt(key: str) -> bool:  # `service:` was refused already: no 'missing services'
        return any(did_you_mean(other, [key]) for other in doc if other not in TOP_KEYS)

    sites: tuple[Site, ...] | None = None
    with ctx.collect():
        if "sites" in doc:
            sites = parse_sites(ctx, doc["sites"], "sites")
        elif not misspelt("sites"):
            ctx.fail("", "missing key 'sites': list the sites (data centers), e.g. [pangyo, ansan]")
    name = None
    with ctx.collect():
        name = as_name(ctx, doc["name"], "name", "project") if doc.get("name") is not None else None
    site_names = [site.name for site in sites] if sites is not None else []
    specs: list[ServiceSpec] = []
    broken: set[str] = set()  # services with a mistake of their own: not in `specs`
    broken_depends: dict[str, tuple[DependencySpec, ...]] = {}  # what they need, if readable
    with ctx.collect():
        if "services" not in doc:
            if not misspelt("services"):
                ctx.fail("", "missing key 'services': the services to start, each with a site")
            services: dict[str, Any] = {}
        else:
            services = as_mapping(
                ctx, doc["services"], "services", "a mapping of service name to service"
            )
            if not services:
                ctx.fail("services", "no services: define at least one")
        for service, value in services.items():
            broken.add(service)
            path = key_path("services", service)
            with ctx.collect():
                specs.append(_our_service(ctx, service, value, path, site_names))
                broken.discard(service)
            if service in broken and isinstance(value, dict) and value.get("depends_on"):
                with Context(ctx.source, ctx.base_dir).collect():  # already reported
                    depends = depends_list(ctx, value["depends_on"], key_path(path, "depends_on"))
                    broken_depends[service] = depends
    clock = "host"
    if doc.get("clock") is not None:
        with ctx.collect():
            clock = parse_clock(ctx, doc["clock"], "clock")
    wan = None
    if sites is not None:
        with ctx.collect():
            if doc.get("wan") is not None:
                wan = parse_wan(ctx, doc["wan"], "wan", site_names)
    if sites is None or not specs or ctx.errors:
        # What spans services (unknown sites, dependencies, cycles) is checked too, among the
        # services that could be read; a reference to one that could not is not a mistake.
        if sites is not None:
            with ctx.collect():
                assemble(
                    Context(ctx.source, ctx.base_dir),
                    sites,
                    specs,
                    name,
                    wan,
                    broken,
                    broken_depends,
                    clock=clock,
                )
        ctx.raise_collected()
    assert sites is not None and specs
    return assemble(ctx, sites, specs, name, wan, clock=clock)


def _our_service(
    ctx: Context, name: str, value: object, path: str, site_names: Sequence[str]
) -> ServiceSpec:
    """One service; each of its keys is checked on its own, so all its mistakes show."""
    as_name(ctx, name, path, "service")
    if value is None:
        ctx.fail(path, "empty service: give it a site and an image or a build context")
    svc = as_mapping(ctx, value, path)
    local = Context(ctx.source, ctx.base_dir)
    compose_keys = ("labels", "restart", "networks", "deploy", "container_name", "expose")
    with local.collect():
        check_keys(ctx, svc, path, SERVICE_KEYS, {k: _compose_hint(k) for k in compose_keys})
    sites: tuple[str, ...] = ()
    per_site = False
    with local.collect():
        if svc.get("site") is None:
            ctx.fail(
                path,
                f"no site: give `site: <site>` (or a list of sites, one instance each); "
                f"{one_of(site_names)}",
            )
        sites, per_site = parse_site_ref(ctx, svc["site"], key_path(path, "site"))
    image: str | None = None
    build: Build | None = None
    with local.collect():
        image, build = _image_or_build(ctx, svc, path)

    def given(key: str) -> bool:
        return svc.get(key) is not None

    fields: dict[str, Any] = {}
    with local.collect():
        fields.update(process_fields(ctx, svc, path))
    ports: list[tuple[int, str]] = []
    if given("ports"):
        with local.collect():
            items = as_list(ctx, svc["ports"], key_path(path, "ports"), "a list of container ports")
            for index, item in enumerate(items):
                item_path = index_path(key_path(path, "ports"), index)
                with local.collect():
                    ports.append((parse_port(ctx, item, item_path), item_path))
    checked_ports: tuple[int, ...] = ()
    with local.collect():
        checked_ports = check_ports(ctx, ports, dedupe=False)
    volumes: list[tuple[Volume, str]] = []
    if given("volumes"):
        volumes_path = key_path(path, "volumes")
        with local.collect():
            mapping = as_mapping(
                ctx, svc["volumes"], volumes_path, "a mapping of volume name to path"
            )
            for volume, mount in mapping.items():
                item_path = key_path(volumes_path, volume)
                with local.collect():
                    as_name(ctx, volume, item_path, "volume")
                    volumes.append(
                        (Volume(volume, parse_mount_path(ctx, mount, item_path)), item_path)
                    )
    checked_volumes: tuple[Volume, ...] = ()
    with local.collect():
        checked_volumes = check_mounts(ctx, volumes)
    health = None
    if given("healthcheck"):
        with local.collect():
            health = _our_healthcheck(ctx, svc["healthcheck"], key_path(path, "healthcheck"))
    depends: tuple[DependencySpec, ...] = ()
    if given("depends_on"):
        with local.collect():
            depends = depends_list(ctx, svc["depends_on"], key_path(path, "depends_on"))
    clock = None
    if given("clock"):
        with local.collect():
            clock = parse_clock(ctx, svc["clock"], key_path(path, "clock"))
    local.raise_collected()
    return ServiceSpec(
        name=name,
        path=path,
        sites=sites,
        site_path=key_path(path, "site"),
        per_site=per_site,
        image=image,
        build=build,
        **fields,
        ports=checked_ports,
        volumes=checked_volumes,
        healthcheck=health,
        depends_on=depends,
        clock=clock,
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
    """`{tcp: PORT}`, `{cmd: [...]}` or `{http: /path, port: PORT}`; `budget` (or its older
    name `timeout`: seconds to become healthy in all), `interval`."""
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
    if check.get("budget") is not None and check.get("timeout") is not None:
        ctx.fail(
            key_path(path, "timeout"),
            "give `budget` or `timeout`, not both: `timeout` is the older name of `budget`, "
            "the seconds allowed in all to become healthy after a start or a restore",
        )
    timing: dict[str, float] = {}
    for key in ("budget", "timeout", "interval"):
        if check.get(key) is not None:
            timing["budget" if key == "timeout" else key] = parse_seconds(
                ctx, check[key], key_path(path, key)
            )
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
                f"expected a URL path starting with / (like /health), found {show(url_path)}",
            )
        if "port" not in check:
            ctx.fail(path, "http: needs `port: PORT`, the container port to send the GET to")
        port = parse_port(ctx, check["port"], key_path(path, "port"))
        health = HealthCheck("http", port=port, path=url_path)
    return replace(
        health,
        budget=timing.get("budget", health.budget),
        interval=timing.get("interval", health.interval),
    )
