"""Disk faults: what `dcfire.disk(target, kind)`, `@disk(target, kind)` and a fire's
`storage=` ask of the storage pools of a site, a service or one instance.

Three kinds, each a thing real disks do on their own: `freeze` (I/O blocks until lifted: a
storage array that vanished), `fail` (every read and write returns EIO: a dead disk or
controller; lifting mounts the pool again and restarts the containers that use it) and
`full` (writes fail with ENOSPC; reads work).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pytest_dcfire.errors import ConfigError, did_you_mean, one_target
from pytest_dcfire.modes import DiskKind

DISK_KINDS: tuple[DiskKind, ...] = ("freeze", "fail", "full")
DISK_KEYWORDS = ("kind",)
#: How each kind is applied: the `via` column of the fire table and the report.
DISK_VIA: dict[DiskKind, str] = {"freeze": "fsfreeze", "fail": "ext4-shutdown", "full": "filler"}


def disk_kind(value: object, where: str, key: str = "kind") -> DiskKind:
    """`value` as a disk kind, or one error naming the valid ones."""
    if value not in DISK_KINDS:
        raise ConfigError(
            f"{where}: unknown {key} {value!r}{did_you_mean(str(value), DISK_KINDS)}; "
            f"valid {key}s: {', '.join(DISK_KINDS)}"
        )
    return value


@dataclass(frozen=True)
class DiskSpec:
    """Apply a disk fault of `kind` to every volume of a site, service or instance."""

    target: str
    kind: DiskKind

    @classmethod
    def parse(
        cls,
        args: Sequence[Any],
        options: Mapping[str, Any],
        sites: Iterable[str],
        services: Iterable[str],
        where: str = "disk",
    ) -> DiskSpec:
        """`disk(target, kind)` or `disk(target, kind=...)`, checked against the names."""
        valid = tuple(dict.fromkeys((*sites, *services)))
        kind: object = options.get("kind")
        names = list(args)
        if len(names) == 2 and "kind" not in options:
            kind = names.pop()
        target = one_target(
            where,
            names,
            options,
            DISK_KEYWORDS,
            valid,
            "name one site, service or instance and a kind (freeze, fail or full)",
            "site, service or instance",
        )
        if kind is None:
            raise ConfigError(f"{where}: give the kind of disk fault: {', '.join(DISK_KINDS)}")
        return cls(target, disk_kind(kind, where))

    def describe(self) -> str:
        return self.kind


#: Modes whose storage step a disk fault kind may replace (the processes keep running, or
#: are killed and keep their disks); a power loss's storage is its own.
STORAGE_KIND_MODES = ("fire", "crash")


def fire_storage(options: Mapping[str, Any], mode: str, where: str) -> bool | DiskKind:
    """A fire's `storage=`: True or False, or a disk fault kind ("freeze" is True)."""
    value = options.get("storage", True)
    if isinstance(value, bool):
        return value
    if value not in DISK_KINDS:
        raise ConfigError(
            f"{where}: storage={value!r}{did_you_mean(str(value), DISK_KINDS)} must be True, "
            f"False or a disk fault kind: {', '.join(DISK_KINDS)}"
        )
    if value == "freeze":
        return True
    if mode not in STORAGE_KIND_MODES:
        raise ConfigError(
            f"{where}: storage={value!r} needs mode 'fire' or 'crash' (mode {mode!r} has its "
            "own storage fault, or none); use storage=True or False"
        )
    return cast(DiskKind, value)


def check_volumes(spec: DiskSpec, topology: Any, where: str) -> None:
    """Refuse a disk fault on a target none of whose services has a volume."""
    members = [s for s in topology.services if spec.target in (s.site, s.name, s.base)]
    if members and not any(s.volumes for s in members):
        names = ", ".join(dict.fromkeys(s.base for s in members))
        raise ConfigError(
            f"{where}: {spec.target!r} has no volumes ({names}: no `volumes:` in "
            f"{topology.source}); a disk fault acts on a service's volumes"
        )


__all__ = [
    "DISK_KINDS",
    "DISK_VIA",
    "DiskKind",
    "DiskSpec",
    "check_volumes",
    "disk_kind",
    "fire_storage",
]
