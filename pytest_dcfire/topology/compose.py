"""The docker-compose subset pytest-dcfire reads, into the same model as its own format.

A compose file needs one addition: each service's site, as a label `dcfire.site: pangyo`
(comma-separated for one instance per site: `pangyo,ansan`) or a key `x-dcfire: {site: ...}`
(a name or a list, as in our format). The sites are those the services name, plus an optional
top-level `x-dcfire: {sites: ...}` (list or mapping with options, as in our format) whose
order comes first.

Every compose key is either read, ignored because ignoring it cannot change what a test sees
(`IGNORED_SERVICE_KEYS`, each with the reason), or refused with a reason
(`UNSUPPORTED_SERVICE_KEYS`): silently dropping `networks` or `user` would make the system
under test differ from the one the file describes.

Mappings that differ from compose's own behaviour, on purpose:

- `image` together with `build`: the service is built (compose would tag the result `image`;
  pytest-dcfire tags its builds itself).
- `healthcheck`: `test: [CMD, ...]` runs as is, `[CMD-SHELL, "..."]` and a plain string run as
  `/bin/sh -c "..."`, `[NONE]` or `disable: true` mean no check. Compose gives up after
  `start_period + interval * retries` (ignoring the time each probe takes), so that is the
  time allowed to become healthy (defaults 0 s, 30 s, 3: 90 s). Compose's `interval` paces a
  check that runs forever; pytest-dcfire only polls while waiting for a start or a recovery,
  so it polls every `start_interval` if given, else every 0.2 s (or `interval`, if smaller).
- Two published ports on one container port keep that container port once.
- `$$` becomes `$` as in compose; variable interpolation (`$VAR`, `${VAR:-x}`) is refused, so
  that the system under test never depends on the shell that ran pytest. Link placeholders
  (`${link:db:5432}`, see `topology.wiring`) are ours, not variables, and pass through.
- Top-level `x-dcfire: {sites: ..., wan: ...}` declares sites and WAN latency as in our format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pytest_dcfire.errors import did_you_mean, one_of
from pytest_dcfire.topology.model import Build, HealthCheck, Site, Topology, Volume
from pytest_dcfire.topology.validate import (
    DEFAULT_POLL_SECONDS,
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
    dependency_options,
    depends_list,
    describe,
    index_path,
    key_path,
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
    scalar_text,
)

__all__ = [
    "IGNORED_SERVICE_KEYS",
    "SERVICE_KEYS",
    "SITE_LABEL",
    "UNSUPPORTED_SERVICE_KEYS",
    "compose_topology",
]

SITE_LABEL = "dcfire.site"

TOP_KEYS = ("name", "services", "version", "volumes")
UNSUPPORTED_TOP_KEYS = {
    "networks": "every service joins the one network of the session and reaches the others "
    "by service name; a fire cuts sites, not networks. Remove this section",
    "configs": "put the file in the image (build:) instead",
    "secrets": "put the value in `environment` or the image instead",
    "include": "write the services into this file",
    "models": "pytest-dcfire starts containers only",
}

SERVICE_KEYS = (
    "build",
    "command",
    "depends_on",
    "entrypoint",
    "environment",
    "healthcheck",
    "image",
    "labels",
    "ports",
    "volumes",
)

#: Keys read and dropped: ignoring them cannot change what a test observes.
IGNORED_SERVICE_KEYS = {
    "container_name": "pytest-dcfire names containers per session so that runs never collide",
    "restart": "pytest-dcfire decides when containers start (power-loss restarts on restore)",
    "expose": "documentation only; `ports` lists the ports tests reach",
    "hostname": "services reach each other by service name on the session's network",
    "stop_grace_period": "only affects teardown",
    "stop_signal": "only affects teardown",
    "logging": "pytest-dcfire reads logs through the engine",
    "pull_policy": "images are never pulled",
    "tty": "no terminal is attached",
    "stdin_open": "no terminal is attached",
    "attach": "no terminal is attached",
    "annotations": "metadata only",
}

_NETWORK = (
    "every service joins the one network of the session and reaches the others by service "
    "name; a fire cuts sites, not networks"
)
_MOUNTS = (
    "only named volumes are supported, because they are kept on the site's storage (which a "
    "fire freezes)"
)
#: Keys refused with the reason (the rest of the compose specification gets a generic one).
UNSUPPORTED_SERVICE_KEYS = {
    "networks": _NETWORK,
    "network_mode": _NETWORK,
    "links": _NETWORK,
    "external_links": _NETWORK,
    "extra_hosts": _NETWORK,
    "dns": _NETWORK,
    "dns_opt": _NETWORK,
    "dns_search": _NETWORK,
    "mac_address": _NETWORK,
    "deploy": "instances come from sites: give the dcfire.site label a list of sites for one "
    "instance per site",
    "scale": "instances come from sites: give the dcfire.site label a list of sites for one "
    "instance per site",
    "profiles": "every service in the file is started",
    "env_file": "write the variables under `environment`",
    "extends": "write the service out (YAML anchors and `<<:` merge keys work)",
    "secrets": "put the value in `environment` or the image instead",
    "configs": "put the file in the image (build:) instead",
    "volumes_from": _MOUNTS,
    "tmpfs": _MOUNTS,
    "privileged": "containers run with the engine's default privileges",
}
#: The rest of the compose specification's service keys: refused, generic reason.
_OTHER_COMPOSE_KEYS = frozenset(
    {
        "blkio_config",
        "cap_add",
        "cap_drop",
        "cgroup",
        "cgroup_parent",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpu_shares",
        "cpus",
        "cpuset",
        "credential_spec",
        "develop",
        "device_cgroup_rules",
        "devices",
        "domainname",
        "driver_opts",
        "gpus",
        "group_add",
        "init",
        "ipc",
        "isolation",
        "label_file",
        "mem_limit",
        "mem_reservation",
        "mem_swappiness",
        "memswap_limit",
        "models",
        "oom_kill_disable",
        "oom_score_adj",
        "pid",
        "pids_limit",
        "platform",
        "post_start",
        "pre_stop",
        "provider",
        "read_only",
        "runtime",
        "security_opt",
        "shm_size",
        "storage_opt",
        "sysctls",
        "ulimits",
        "use_api_socket",
        "user",
        "userns_mode",
        "uts",
        "working_dir",
    }
)
_KNOWN_SERVICE_KEYS = (
    set(SERVICE_KEYS) | set(IGNORED_SERVICE_KEYS) | set(UNSUPPORTED_SERVICE_KEYS)
) | _OTHER_COMPOSE_KEYS

BUILD_KEYS = ("args", "context", "dockerfile")
IGNORED_BUILD_KEYS = frozenset({"cache_from", "cache_to", "labels", "no_cache", "pull", "tags"})
HEALTH_KEYS = (
    "disable",
    "interval",
    "retries",
    "start_interval",
    "start_period",
    "test",
    "timeout",
)
PORT_KEYS = ("app_protocol", "host_ip", "mode", "name", "protocol", "published", "target")
VOLUME_MOUNT_KEYS = ("consistency", "read_only", "source", "target", "type")
CONDITIONS = ("service_healthy", "service_started")

_VARIABLE_START = re.compile(r"[A-Za-z_{]")


def compose_topology(ctx: Context, doc: Mapping[str, Any]) -> Topology:
    """Read a compose document (already parsed, a mapping with string keys), collecting
    every mistake and raising them all at once."""
    for key in doc:
        if key in UNSUPPORTED_TOP_KEYS:
            with ctx.collect():
                ctx.fail(key, f"not supported by pytest-dcfire: {UNSUPPORTED_TOP_KEYS[key]}")
    hint = {"sites": "not a compose key: in a compose file, list sites in `x-dcfire: {sites: ...}`"}
    with ctx.collect():
        others = {k: v for k, v in doc.items() if k not in UNSUPPORTED_TOP_KEYS}
        check_keys(ctx, others, "", TOP_KEYS, hint)
    doc = {
        key: _no_interpolation(ctx, value, key)
        for key, value in doc.items()
        if key in ("name", "services", "volumes", "x-dcfire")
    }
    declared_sites: tuple[Site, ...] = ()
    sites_ok = True
    extension: Mapping[str, Any] = {}
    if doc.get("x-dcfire") is not None:
        sites_ok = False
        with ctx.collect():
            extension = as_mapping(ctx, doc["x-dcfire"], "x-dcfire")
            check_keys(ctx, extension, "x-dcfire", ("clock", "sites", "wan"))
            if extension.get("sites") is not None:
                declared_sites = parse_sites(ctx, extension["sites"], "x-dcfire.sites")
            sites_ok = True
    name = None
    with ctx.collect():
        name = as_name(ctx, doc["name"], "name", "project") if doc.get("name") is not None else None
    volumes: tuple[str, ...] = ()
    with ctx.collect():
        volumes = _declared_volumes(ctx, doc.get("volumes"))
    specs: list[ServiceSpec] = []
    broken: set[str] = set()
    broken_depends: dict[str, tuple[DependencySpec, ...]] = {}
    with ctx.collect():
        if doc.get("services") is None:
            ctx.fail(
                "", "missing key 'services': the services to start, each labelled with its site"
            )
        services = as_mapping(
            ctx, doc["services"], "services", "a mapping of service name to service"
        )
        if not services:
            ctx.fail("services", "no services: define at least one")
        for service, value in services.items():
            broken.add(service)
            path = key_path("services", service)
            with ctx.collect():
                specs.append(_service(ctx, service, value, path, volumes))
                broken.discard(service)
            if service in broken and isinstance(value, dict) and value.get("depends_on"):
                with Context(ctx.source, ctx.base_dir).collect():  # already reported
                    depends = _depends_on(ctx, value["depends_on"], key_path(path, "depends_on"))
                    broken_depends[service] = depends
    sites = list(declared_sites)
    known = {site.name for site in sites}
    for spec in specs:
        for site in spec.sites:
            if site not in known:
                known.add(site)
                sites.append(Site(site))
    clock = "host"
    if extension.get("clock") is not None:
        with ctx.collect():
            clock = parse_clock(ctx, extension["clock"], "x-dcfire.clock")
    wan = None
    if sites_ok and extension.get("wan") is not None:
        with ctx.collect():
            wan = parse_wan(ctx, extension["wan"], "x-dcfire.wan", [s.name for s in sites])
    if ctx.errors:
        if sites_ok and sites:
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
    return assemble(ctx, sites, specs, name, wan, clock=clock)


def _no_interpolation(ctx: Context, value: object, path: str) -> object:
    """Unescape `$$` and refuse `$VAR` / `${VAR}` in every string value below `value`
    (each refusal is collected in `ctx`)."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        out: list[str] = []
        index = 0
        while (dollar := value.find("$", index)) >= 0:
            out.append(value[index:dollar])
            following = value[dollar + 1 : dollar + 2]
            if following == "$":
                out.append("$")
                index = dollar + 2
                continue
            if value.startswith("{link", dollar + 1):  # a link placeholder, not a variable
                out.append("$")
                index = dollar + 1
                continue
            if _VARIABLE_START.match(following):
                with ctx.collect():  # kept, and the value read on (its key says it once)
                    ctx.fail(
                        path,
                        "variable interpolation ($VAR, ${VAR}) is not supported by "
                        "pytest-dcfire, so that runs do not depend on the shell's environment: "
                        "write the value out (or $$ for a literal $)",
                    )
                return value
            out.append("$")
            index = dollar + 1
        out.append(value[index:])
        return "".join(out)
    if isinstance(value, dict):
        return {k: _no_interpolation(ctx, v, key_path(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_interpolation(ctx, v, index_path(path, i)) for i, v in enumerate(value)]
    return value


def _declared_volumes(ctx: Context, value: object) -> tuple[str, ...]:
    """The top-level `volumes:` section: names, with no driver but the local one."""
    if value is None:
        return ()
    section = as_mapping(ctx, value, "volumes", "a mapping of volume name to options")
    for name, options in section.items():
        path = key_path("volumes", name)
        as_name(ctx, name, path, "volume")
        if options is None:
            continue
        opts = as_mapping(ctx, options, path)
        why = (
            "pytest-dcfire keeps every named volume on its site's storage pool (a loop-backed "
            "filesystem that a fire freezes)"
        )
        check_keys(
            ctx,
            opts,
            path,
            ("driver", "labels", "name"),
            {
                "driver_opts": f"driver options are not supported: {why}",
                "external": f"external volumes are not supported: {why}",
            },
        )
        if opts.get("driver") not in (None, "local"):
            ctx.fail(key_path(path, "driver"), f"volume drivers are not supported: {why}")
    return tuple(section)


def _service(
    ctx: Context, name: str, value: object, path: str, volumes: tuple[str, ...]
) -> ServiceSpec:
    """One compose service; each of its keys is checked on its own, so all its mistakes show."""
    as_name(ctx, name, path, "service")
    if value is None:
        ctx.fail(path, "empty service: give it an image or a build context, and a site")
    svc = as_mapping(ctx, value, path)
    local = Context(ctx.source, ctx.base_dir)
    for key in svc:
        if key in SERVICE_KEYS or key in IGNORED_SERVICE_KEYS or key.startswith("x-"):
            continue
        with local.collect():
            if key in UNSUPPORTED_SERVICE_KEYS or key in _OTHER_COMPOSE_KEYS:
                reason = UNSUPPORTED_SERVICE_KEYS.get(key, "remove it, or move it under an x- key")
                ctx.fail(key_path(path, key), f"not supported by pytest-dcfire: {reason}")
            ctx.fail(
                path,
                f"unknown key {key!r}{did_you_mean(key, _KNOWN_SERVICE_KEYS)}; supported: "
                f"{', '.join(SERVICE_KEYS)}, x-dcfire",
            )

    def given(key: str) -> bool:
        return svc.get(key) is not None

    sites: tuple[str, ...] = ()
    per_site, site_path = False, path
    with local.collect():
        sites, per_site, site_path = _site(ctx, name, svc, path)
    image: str | None = None
    build: Build | None = None
    with local.collect():
        if given("build"):
            build = _build(ctx, svc["build"], key_path(path, "build"))
            if given("image"):  # compose tags the build with it; we tag builds ourselves
                parse_image(ctx, svc["image"], key_path(path, "image"))
        elif given("image"):
            image = parse_image(ctx, svc["image"], key_path(path, "image"))
        else:
            ctx.fail(
                path,
                "no image: give `image:` (an image on the engine, e.g. postgres:16) or `build:` "
                "(a directory with a Dockerfile, e.g. ./db)",
            )
    fields: dict[str, Any] = {}
    with local.collect():
        fields.update(process_fields(ctx, svc, path))
    ports: tuple[int, ...] = ()
    if given("ports"):
        with local.collect():
            ports = _ports(ctx, svc["ports"], key_path(path, "ports"))
    mounts: tuple[Volume, ...] = ()
    if given("volumes"):
        with local.collect():
            mounts = _volumes(ctx, svc["volumes"], key_path(path, "volumes"), volumes)
    health = None
    if given("healthcheck"):
        with local.collect():
            health = _healthcheck(ctx, svc["healthcheck"], key_path(path, "healthcheck"))
    depends: tuple[DependencySpec, ...] = ()
    if given("depends_on"):
        with local.collect():
            depends = _depends_on(ctx, svc["depends_on"], key_path(path, "depends_on"))
    clock = None
    extension = svc.get("x-dcfire")
    if isinstance(extension, Mapping) and extension.get("clock") is not None:
        with local.collect():
            clock = parse_clock(
                ctx, extension["clock"], key_path(key_path(path, "x-dcfire"), "clock")
            )
    local.raise_collected()
    return ServiceSpec(
        name=name,
        path=path,
        sites=sites,
        site_path=site_path,
        per_site=per_site,
        image=image,
        build=build,
        **fields,
        ports=ports,
        volumes=mounts,
        healthcheck=health,
        depends_on=depends,
        clock=clock,
    )


def _labels(ctx: Context, value: object, path: str) -> dict[str, tuple[str, str]]:
    """Labels as {key: (value, key path)}, from a mapping or a list of `key=value`."""
    labels: dict[str, tuple[str, str]] = {}
    if isinstance(value, dict):
        for key, item in as_mapping(ctx, value, path).items():
            item_path = key_path(path, key)
            labels[key] = ("" if item is None else scalar_text(ctx, item, item_path), item_path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            item_path = index_path(path, index)
            key, _, text = as_str(ctx, item, item_path, "a string key=value").partition("=")
            labels[key] = (text, item_path)
    else:
        ctx.fail(
            path, f"expected a mapping or a list of key=value strings, found {describe(value)}"
        )
    for key, (_, item_path) in labels.items():
        if key.startswith("dcfire.") and key != SITE_LABEL:
            ctx.fail(
                item_path,
                f"unknown pytest-dcfire label {key!r}{did_you_mean(key, [SITE_LABEL])}; the "
                f"only one is {SITE_LABEL}",
            )
    return labels


def _site(
    ctx: Context, name: str, svc: Mapping[str, Any], path: str
) -> tuple[tuple[str, ...], bool, str]:
    """(sites, one instance per site?, key path) from the label or `x-dcfire.site`."""
    labels = (
        _labels(ctx, svc["labels"], key_path(path, "labels"))
        if svc.get("labels") is not None
        else {}
    )
    extension_site: object = None
    extension_path = key_path(key_path(path, "x-dcfire"), "site")
    if svc.get("x-dcfire") is not None:
        extension = as_mapping(ctx, svc["x-dcfire"], key_path(path, "x-dcfire"))
        check_keys(ctx, extension, key_path(path, "x-dcfire"), ("clock", "site"))
        extension_site = extension.get("site")
    if SITE_LABEL in labels and extension_site is not None:
        ctx.fail(path, f"the site is given twice ({SITE_LABEL} label and x-dcfire.site): keep one")
    if SITE_LABEL in labels:
        text, label_path = labels[SITE_LABEL]
        names = [part.strip() for part in text.split(",")]
        if len(names) == 1:
            return (as_name(ctx, names[0], label_path, "site"),), False, label_path
        sites: list[str] = []
        for part in names:
            site = as_name(ctx, part, label_path, "site")
            if site in sites:
                ctx.fail(label_path, f"site {site!r} is listed twice")
            sites.append(site)
        return tuple(sites), True, label_path
    if extension_site is not None:
        sites_found, per_site = parse_site_ref(ctx, extension_site, extension_path)
        return sites_found, per_site, extension_path
    ctx.fail(
        path,
        f"no site for service {name!r}: add a label `{SITE_LABEL}: <site>` (comma-separated "
        "for one instance per site), or a key `x-dcfire: {site: <site>}` (a list for one "
        "instance per site)",
    )


def _build(ctx: Context, value: object, path: str) -> Build:
    if isinstance(value, dict):
        build = as_mapping(ctx, value, path)
        for key in build:
            if key in BUILD_KEYS or key in IGNORED_BUILD_KEYS or key.startswith("x-"):
                continue
            ctx.fail(
                key_path(path, key),
                f"build option {key!r} is not supported by pytest-dcfire; supported: "
                f"{', '.join(BUILD_KEYS)}",
            )
        value = {key: item for key, item in build.items() if key in BUILD_KEYS}
    return parse_build(ctx, value, path, context_required=False)


def _ports(ctx: Context, value: object, path: str) -> tuple[int, ...]:
    """Container ports of `80`, `"8080:80"`, `"127.0.0.1:8080:80/tcp"`, `{target: 80}`."""
    ports: list[tuple[int, str]] = []
    for index, item in enumerate(as_list(ctx, value, path, "a list of ports")):
        item_path = index_path(path, index)
        if isinstance(item, dict):
            port = as_mapping(ctx, item, item_path)
            check_keys(ctx, port, item_path, PORT_KEYS)
            if port.get("target") is None:
                ctx.fail(item_path, "missing key 'target': the container port")
            protocol = port.get("protocol")
            if protocol is not None and protocol != "tcp":
                ctx.fail(
                    key_path(item_path, "protocol"),
                    f"only TCP ports are supported, found {describe(protocol)}",
                )
            ports.append(
                (parse_port(ctx, port["target"], key_path(item_path, "target")), item_path)
            )
        elif isinstance(item, str):
            ports.extend((port, item_path) for port in _short_port(ctx, item, item_path))
        else:
            ports.append((parse_port(ctx, item, item_path), item_path))
    return check_ports(ctx, ports, dedupe=True)


def _short_port(ctx: Context, text: str, path: str) -> list[int]:
    spec, _, protocol = text.strip().partition("/")
    if protocol and protocol.lower() != "tcp":
        ctx.fail(path, f"only TCP ports are supported, found {text!r}")
    container = spec.rsplit(":", 1)[-1]
    low, dash, high = container.partition("-")
    if not (low.isascii() and low.isdigit()) or (dash and not (high.isascii() and high.isdigit())):
        ctx.fail(
            path,
            f"expected a port like 80, 8080:80 or 127.0.0.1:8080:80/tcp, found {describe(text)}",
        )
    first = parse_port(ctx, low, path)
    last = parse_port(ctx, high, path) if dash else first
    if last < first or last - first >= 1000:
        ctx.fail(path, f"bad port range {container!r} (at most 1000 ports, low-high)")
    return list(range(first, last + 1))


def _volumes(
    ctx: Context, value: object, path: str, declared: tuple[str, ...]
) -> tuple[Volume, ...]:
    mounts: list[tuple[Volume, str]] = []
    for index, item in enumerate(as_list(ctx, value, path, "a list of volumes")):
        item_path = index_path(path, index)
        if isinstance(item, str):
            source, target = _short_volume(ctx, as_str(ctx, item, item_path), item_path)
            target_path = item_path
        elif isinstance(item, dict):
            mount = as_mapping(ctx, item, item_path)
            check_keys(
                ctx,
                mount,
                item_path,
                VOLUME_MOUNT_KEYS,
                {
                    key: f"{key!r} is not supported: {_MOUNTS}"
                    for key in ("bind", "volume", "tmpfs")
                },
            )
            kind = mount.get("type", "volume")
            if kind != "volume":
                shown = repr(kind) if isinstance(kind, str) else describe(kind)
                ctx.fail(
                    key_path(item_path, "type"),
                    f"{shown} mounts are not supported: {_MOUNTS}; use type: volume "
                    "with a named volume",
                )
            if mount.get("read_only") not in (None, False):
                ctx.fail(key_path(item_path, "read_only"), "read-only mounts are not supported")
            if mount.get("target") is None:
                ctx.fail(item_path, "missing key 'target': the mount path in the container")
            if mount.get("source") is None:
                ctx.fail(
                    item_path,
                    f"anonymous volumes are not supported: {_MOUNTS}; give it a `source` name",
                )
            source = mount["source"]
            target = mount["target"]
            target_path = key_path(item_path, "target")
            source = _volume_name(ctx, source, key_path(item_path, "source"))
        else:
            ctx.fail(
                item_path,
                f"expected a string like data:/var/lib/x or a mapping, found {describe(item)}",
            )
        if source not in declared:
            ctx.fail(
                item_path,
                f"volume {source!r} is not declared in the top-level volumes section"
                f"{did_you_mean(source, declared)}; {one_of(declared)}",
            )
        mounts.append((Volume(source, parse_mount_path(ctx, target, target_path)), item_path))
    return check_mounts(ctx, mounts)


def _short_volume(ctx: Context, text: str, path: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) == 1:
        ctx.fail(
            path,
            f"anonymous volumes are not supported: {_MOUNTS}; name it, e.g. data:{text}",
        )
    if len(parts) > 3:
        ctx.fail(path, f"expected NAME:PATH or NAME:PATH:rw, found {text!r}")
    if len(parts) == 3 and parts[2] != "rw":
        ctx.fail(
            path,
            f"mount options {parts[2]!r} are not supported (only rw: volumes are mounted "
            "read-write)",
        )
    return _volume_name(ctx, parts[0], path), parts[1]


def _volume_name(ctx: Context, source: object, path: str) -> str:
    text = as_str(ctx, source, path, "a volume name (a string)")
    if text.startswith(("/", ".", "~")) or "/" in text or "\\" in text:
        ctx.fail(
            path,
            f"bind mounts ({text!r}) are not supported: {_MOUNTS}; declare a named volume "
            "instead, e.g. data:/var/lib/x",
        )
    return as_name(ctx, text, path, "volume")


def _depends_on(ctx: Context, value: object, path: str) -> tuple[DependencySpec, ...]:
    """The list form, or `{db: {condition: service_healthy}}`: both wait for db's health.
    `x-dcfire: {failover: true, site: same}` in an entry says what our format says with
    `failover:` and `site:` (compose ignores `x-` keys)."""
    if not isinstance(value, dict):
        return depends_list(ctx, value, path)
    refs: list[DependencySpec] = []
    inner = Context(ctx.source, ctx.base_dir)
    for ref, options in as_mapping(ctx, value, path).items():
        with inner.collect():
            refs.append(_dependency(ctx, ref, options, key_path(path, ref)))
    inner.raise_collected()
    return tuple(refs)


def _dependency(ctx: Context, ref: str, options: object, ref_path: str) -> DependencySpec:
    if options is None:
        return DependencySpec(ref, ref_path)
    opts = as_mapping(ctx, options, ref_path, "a mapping like {condition: service_healthy}")
    check_keys(ctx, opts, ref_path, ("condition", "required", "restart"))
    condition = opts.get("condition")
    condition_path = key_path(ref_path, "condition")
    if condition == "service_completed_successfully":
        ctx.fail(
            condition_path,
            "service_completed_successfully is not supported: every service is "
            "long-running and waited for by its health check",
        )
    if condition is not None and condition not in CONDITIONS:
        shown = condition if isinstance(condition, str) else ""
        ctx.fail(
            condition_path,
            f"unknown condition {describe(condition)}{did_you_mean(shown, CONDITIONS)}; "
            f"{one_of(CONDITIONS)}",
        )
    for key in ("required", "restart"):
        if opts.get(key) is not None and not isinstance(opts[key], bool):
            ctx.fail(
                key_path(ref_path, key),
                f"expected true or false, found {describe(opts[key])}",
            )
    extension = opts.get("x-dcfire")
    if extension is None:
        return DependencySpec(ref, ref_path)
    return dependency_options(
        ctx, ref, extension, key_path(ref_path, "x-dcfire"), ("failover", "site"), None
    )


def _healthcheck(ctx: Context, value: object, path: str) -> HealthCheck | None:
    check = as_mapping(ctx, value, path)
    check_keys(ctx, check, path, HEALTH_KEYS)
    disable = check.get("disable")
    if disable is not None and not isinstance(disable, bool):
        ctx.fail(key_path(path, "disable"), f"expected true or false, found {describe(disable)}")
    if disable:
        return None
    if check.get("test") is None:
        ctx.fail(
            path,
            "missing key 'test': pytest-dcfire does not read an image's own HEALTHCHECK; give "
            'test: ["CMD", ...] or ["CMD-SHELL", "..."]',
        )
    test_path = key_path(path, "test")
    test = check["test"]
    if isinstance(test, str):
        if not test.strip():
            ctx.fail(test_path, "empty test command")
        cmd: tuple[str, ...] = ("/bin/sh", "-c", as_str(ctx, test, test_path))
    else:
        items = [
            as_str(ctx, item, index_path(test_path, index))
            for index, item in enumerate(as_list(ctx, test, test_path, "a list or a string"))
        ]
        head = items[0] if items else ""
        if head == "NONE":
            return None
        if head == "CMD" and len(items) > 1:
            cmd = tuple(items[1:])
        elif head == "CMD-SHELL" and len(items) == 2:
            cmd = ("/bin/sh", "-c", items[1])
        else:
            ctx.fail(
                test_path,
                'expected ["CMD", program, args...], ["CMD-SHELL", "command line"] or ["NONE"]',
            )

    def seconds(key: str, default: float, allow_zero: bool = False) -> float:
        if check.get(key) is None:
            return default
        return parse_seconds(ctx, check[key], key_path(path, key), allow_zero)

    interval = seconds("interval", 30.0)
    seconds("timeout", 30.0)  # per probe; validated, not modelled
    start_period = seconds("start_period", 0.0, allow_zero=True)
    retries = check.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= 10_000:
        ctx.fail(
            key_path(path, "retries"),
            f"expected a number of attempts (1 or more), found {describe(retries)}",
        )
    poll = seconds("start_interval", min(interval, DEFAULT_POLL_SECONDS))
    budget = round(start_period + interval * retries, 3)
    return HealthCheck("cmd", cmd=cmd, budget=budget, interval=poll)
