"""--dcfire-reuse: keep the running system for the next session, and take a kept one over.

A reusable system carries `L_RETAIN=reuse` on everything it is made of, and one *record*: a
small Docker volume (role `reuse`) whose labels say whose it is (key: user, host, xdist
worker, topology file, engine), what made it (the fingerprint: the topology file's content,
every image's id, the plugin version, the helper image), its link proxies' ports, when it
was last used and for how long it may then be kept (`dcfire_reuse_ttl`). Labels cannot
change, so each use writes a new record and removes the older ones. The record's pid labels
are those of the session using the system now: while it lives, or while the record is
younger than its TTL, no other session's cleanup removes the system (runtime/reaper.py).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from pytest_dcfire.runtime.engine import (
    L_HOST,
    L_ROLE,
    L_SESSION,
    LABEL,
    RETAIN_REUSE,
    Engine,
    SessionIdentity,
)
from pytest_dcfire.runtime.images import build_tag
from pytest_dcfire.topology.model import Service, Topology

ROLE_RECORD = "reuse"
L_KEY = f"{LABEL}.reuse.key"
L_USER = f"{LABEL}.reuse.user"
L_USED = f"{LABEL}.reuse.last-used"
L_TTL = f"{LABEL}.reuse.ttl"
L_PRINT = f"{LABEL}.reuse.fingerprint"
L_LINKS = f"{LABEL}.reuse.link-ports"


class NotReusable(Exception):
    """The kept system of `session` cannot be reused; `reason` is the line the user sees;
    `remove`: whether the fresh start removes it (not when another live session uses it)."""

    def __init__(self, session: str, reason: str, remove: bool = True) -> None:
        self.session = session
        self.reason = reason
        self.remove = remove
        super().__init__(f"session {session}: {reason}")


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def reuse_key(topology: Topology, worker: str) -> str:
    """Which kept system a session may take: same user, host, worker, topology, engine."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    raw = "\0".join((user(), SessionIdentity.new().host, worker, topology.source, where))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


# -- the fingerprint ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What made a system; any difference means a fresh start, and says which."""

    topology: str
    images: dict[str, str]
    plugin: str
    helper: str
    toxiproxy: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        data = json.loads(text)
        return cls(
            str(data["topology"]),
            {str(k): str(v) for k, v in dict(data["images"]).items()},
            str(data["plugin"]),
            str(data["helper"]),
            str(data["toxiproxy"]),
        )

    def difference(self, now: Fingerprint) -> str | None:
        """Why a system made by `self` is not the one `now` asks for, or None."""
        if self.topology != now.topology:
            return "the topology file changed"
        for name in sorted(set(self.images) | set(now.images)):
            if self.images.get(name) != now.images.get(name):
                if name not in self.images or name not in now.images:
                    return f"service {name} was added or removed"
                return f"the image of service {name} changed (rebuilt)"
        if self.plugin != now.plugin:
            return f"pytest-dcfire changed ({self.plugin} -> {now.plugin})"
        if self.helper != now.helper:
            return "the dcfire helper image changed"
        if self.toxiproxy != now.toxiproxy:
            return "dcfire_toxiproxy changed"
        return None


def fingerprint(
    engine: Engine, topology: Topology, toxiproxy: str, plugin: str, helper: str
) -> Fingerprint:
    """What made a system: its topology file, images, `dcfire_toxiproxy`, the plugin's
    version and the helper image's tag (the last two given by the caller, above the faults)."""
    images: dict[str, str] = {}
    by_ref: dict[str, str] = {}  # thirty services of one image: one engine call
    for service in topology.services:
        if service.base not in images:
            ref = _image_ref(service)
            if ref not in by_ref:
                by_ref[ref] = _image_identity(engine, service, ref)
            images[service.base] = by_ref[ref]
    source = Path(topology.source)
    content = source.read_bytes() if source.is_file() else topology.source.encode()
    return Fingerprint(
        topology=hashlib.sha256(content).hexdigest(),
        images=images,
        plugin=plugin,
        helper=helper,
        toxiproxy=toxiproxy,
    )


def _image_ref(service: Service) -> str:
    return build_tag(service.build) if service.build is not None else str(service.image)


def _image_identity(engine: Engine, service: Service, ref: str) -> str:
    """The image id (and, for a `build:`, a digest of its context's files' names, sizes and
    times: an edited Dockerfile or source file is a changed image before anyone builds it)."""
    try:
        image_id = str(engine.client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        image_id = "missing"
    if service.build is None:
        return image_id
    digest = hashlib.sha256()
    root = Path(service.build.context)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode()
            )
    return f"{image_id}+{digest.hexdigest()[:16]}"


# -- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One reuse record (the newest of its session is the one that counts)."""

    session: str
    key: str
    user: str
    last_used: float
    ttl: float
    fingerprint: Fingerprint
    link_ports: list[int]
    labels: dict[str, str] = field(repr=False)
    volume: str = ""

    @classmethod
    def from_volume(cls, volume: Any) -> Record | None:
        labels = dict(volume.attrs.get("Labels") or {})
        try:
            return cls(
                session=labels[L_SESSION],
                key=labels[L_KEY],
                user=labels[L_USER],
                last_used=float(labels[L_USED]),
                ttl=float(labels[L_TTL]),
                fingerprint=Fingerprint.from_json(labels[L_PRINT]),
                link_ports=[int(p) for p in json.loads(labels.get(L_LINKS, "[]"))],
                labels=labels,
                volume=str(volume.name),
            )
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def in_use(self) -> bool:
        """A live session on this host is using it now (or one on another host might be)."""
        return not SessionIdentity.is_dead(self.labels)

    def protects(self, now: float | None = None) -> bool:
        """Whether another session's cleanup must leave the system alone."""
        now = time.time() if now is None else now
        return self.in_use or now - self.last_used < self.ttl


def records(client: Any, **match: str) -> list[Record]:
    """Every reuse record on the engine (newest first), optionally only with these labels."""
    wanted = [f"{L_ROLE}={ROLE_RECORD}", *(f"{k}={v}" for k, v in match.items())]
    found = []
    for volume in client.volumes.list(filters={"label": wanted}):
        record = Record.from_volume(volume)
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: r.last_used, reverse=True)


def newest_by_session(found: Iterable[Record]) -> dict[str, Record]:
    newest: dict[str, Record] = {}
    for record in found:
        if record.session not in newest or record.last_used > newest[record.session].last_used:
            newest[record.session] = record
    return newest


def write_record(
    engine: Engine,
    key: str,
    printed: Fingerprint,
    ttl: float,
    link_ports: Iterable[int] = (),
) -> None:
    """Say that this session uses the system now (and until `ttl` s after it ends); the
    older records of the same system are removed."""
    session = engine.session
    now = time.time()
    labels = session.labels(ROLE_RECORD)
    labels.update(
        {
            L_KEY: key,
            L_USER: user(),
            L_USED: f"{now:.3f}",
            L_TTL: f"{ttl:g}",
            L_PRINT: printed.to_json(),
            L_LINKS: json.dumps(list(link_ports)),
        }
    )
    name = session.name("reuse", str(int(now * 1000)))
    engine.retry(lambda: engine.client.volumes.create(name=name, labels=labels))
    for old in records(engine.client, **{L_SESSION: session.id}):
        if old.volume != name:
            with contextlib.suppress(docker.errors.APIError):
                engine.client.volumes.get(old.volume).remove(force=True)


def find(engine: Engine, key: str) -> Record | None:
    """The newest kept system this session may take over, if any (on this host)."""
    for record in records(engine.client, **{L_KEY: key}):
        if record.labels.get(L_HOST) == engine.session.host:
            return record
    return None


def mine(client: Any) -> list[Record]:
    """The newest record of every reusable system of this user (for --dcfire-clean)."""
    return list(newest_by_session(records(client, **{L_USER: user()})).values())


__all__ = [
    "RETAIN_REUSE",
    "Fingerprint",
    "NotReusable",
    "Record",
    "find",
    "fingerprint",
    "mine",
    "records",
    "reuse_key",
    "write_record",
]
