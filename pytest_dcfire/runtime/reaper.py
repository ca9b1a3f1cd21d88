"""Removes what dead sessions left behind: only objects carrying our labels, only when the
owning process is provably gone (same host, pid gone or recycled).

Frozen storage is thawed first (by the fault layer's `thaw_dead`), so that removing a
container never waits on a frozen filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from pytest_dcfire.runtime.engine import L_ROLE, L_SESSION, SessionIdentity, _list

Thaw = Callable[[str, list[Any]], None]


@dataclass
class ReapReport:
    sessions: list[str] = field(default_factory=list)
    containers: int = 0
    volumes: int = 0
    networks: int = 0
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.sessions:
            return "nothing left by dead sessions"
        text = (
            f"removed what {len(self.sessions)} dead session(s) left "
            f"({', '.join(self.sessions)}): {self.containers} container(s), "
            f"{self.volumes} volume(s), {self.networks} network(s)"
        )
        if self.problems:
            text += f"; not removed: {'; '.join(self.problems)}"
        return text


def _labels(obj: Any) -> dict[str, str]:
    if hasattr(obj, "labels") and not isinstance(obj.attrs.get("Labels"), dict):
        return dict(obj.labels or {})
    return dict(obj.attrs.get("Labels") or {})


def reap_dead_sessions(
    client: docker.DockerClient,
    thaw: Thaw | None = None,
    label: str | None = None,
    sessions: Collection[str] = (),
) -> ReapReport:
    """Remove containers, then volumes, then networks of every dead session (only of those
    whose objects also carry `label`, `key=value`, when given), and of `sessions` whoever
    holds them (a kept system found unfit for reuse).

    A reusable system (--dcfire-reuse) outlives its session on purpose: it is left alone
    while a live session uses it or its record is younger than its TTL (runtime/reuse.py)."""
    from pytest_dcfire.runtime.reuse import newest_by_session, records

    report = ReapReport()
    flt = {"label": [L_SESSION, label] if label else L_SESSION}
    protected = {
        session
        for session, record in newest_by_session(records(client)).items()
        if record.protects() and session not in sessions
    }
    found: dict[str, dict[str, list[Any]]] = {}
    for kind in ("containers", "volumes", "networks"):
        for obj in _list(client, kind, flt):
            labels = _labels(obj)
            session = labels.get(L_SESSION, "")
            if not session or session in protected:
                continue
            if session in sessions or SessionIdentity.is_dead(labels):
                found.setdefault(session, {}).setdefault(kind, []).append(obj)
    for session, objects in sorted(found.items()):
        report.sessions.append(session)
        containers = objects.get("containers", [])
        if thaw is not None:
            try:
                thaw(session, containers)
            except Exception as exc:  # a failed thaw must not stop the cleanup of the rest
                report.problems.append(f"thaw {session}: {exc}")
        # Services first, the helper (which holds pool mounts) last.
        containers.sort(key=lambda c: _labels(c).get(L_ROLE) == "helper")
        for container in containers:
            report.containers += _remove(container, report, force=True)
        for volume in objects.get("volumes", []):
            report.volumes += _remove(volume, report, force=True)
        for network in objects.get("networks", []):
            report.networks += _remove(network, report)
    return report


def _remove(obj: Any, report: ReapReport, **kwargs: Any) -> int:
    try:
        obj.remove(**kwargs)
    except docker.errors.NotFound:
        return 0
    except docker.errors.APIError as exc:
        why = str(exc.explanation or exc)
        if "active endpoints" in why and not _attached(obj):
            why += f" ({STALE_ENDPOINT})"
        report.problems.append(f"{getattr(obj, 'name', obj)}: {why}")
        return 0
    return 1


#: What it means when a network with no container attached "has active endpoints".
STALE_ENDPOINT = (
    "no container is attached: the engine kept a stale endpoint count, a known Docker engine "
    "bug; restarting the engine clears it"
)


def _attached(network: Any) -> bool:
    """Whether the engine lists any container on `network` (True when it cannot tell)."""
    try:
        network.reload()
    except docker.errors.APIError:
        return True
    return bool(network.attrs.get("Containers"))
