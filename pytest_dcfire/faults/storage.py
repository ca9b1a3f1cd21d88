"""Storage pools: each named volume of a service instance lives on its own loop-backed ext4
filesystem made for the session, so that freezing it blocks exactly that volume's I/O and
nothing else on the host (never the host's root filesystem).

How a pool is made, entirely inside the helper (works on a remote engine too): a sparse
image file on the session's state volume, mkfs.ext4 with lazy init, a loop device attached
with LOOP_CONFIGURE (node made with mknod if the helper's /dev lacks it), mounted inside the
helper at /dcfire/mnt/<pool>. Then `docker volume create` with the local driver
(`type=ext4, device=/dev/loopN`), labelled with the session, is what containers mount: the
engine mounts the same block device, which shares the superblock with the helper's mount.

Freeze and thaw are FIFREEZE/FITHAW on the helper's mount. Because the helper keeps a mount,
the engine unmounting the volume (a container stopped or killed during the freeze) is
never the last unmount, and returns at once; even a last unmount of a frozen ext4 returns
at once on the kernels checked (the superblock lingers frozen until thawed through a new
mount, which is how the reaper thaws a dead session's pools).

A process blocked writing to a frozen pool sleeps uninterruptibly: it cannot die before
the thaw, and the engine's own `kill` of its container fails after 12 s. So a crash kills
through the helper (see power.py), kills before it freezes and thaws before it powers on.

A power loss shuts the pool down instead (EXT4_IOC_SHUTDOWN, NOLOGFLUSH): every dirty page
and uncommitted journal transaction is dropped, every I/O returns EIO. A shut-down ext4
only comes back once every mount of it is gone: the killed containers' exits make the
engine unmount the volume, then the helper unmounts its own mount and mounts it again (the
journal replays), and only then are the containers started (the engine mounts it again).

Disk faults on their own (`dcfire.disk`) use the same tools: `fail` is that shutdown under
running processes (lifting kills the containers that use the pool, mounts it again and
starts them); `full` is a filler file that preallocates every free block (agent/filler.py).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker.errors

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    FREEZE,
    POOL_ATTACH,
    POOL_CREATE,
    POOL_DESTROY,
    POOL_FILL,
    POOL_REMOUNT,
    POOL_SHUTDOWN,
    POOL_UNFILL,
    THAW,
    PoolAttachRequest,
    PoolCreateRequest,
    PoolRequest,
    PoolShutdownRequest,
    PoolsRequest,
    WireTarget,
)
from pytest_dcfire.faults.helper import AgentError, Helper, Reply
from pytest_dcfire.faults.network import container_id
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.runtime.engine import Engine, monotonic_ms
from pytest_dcfire.topology.model import DEFAULT_POOL_MB, Service, Topology, Volume

#: The via column of a power loss's storage step (and of a failed disk).
SHUTDOWN_VIA = "ext4-shutdown"
#: ... and of a full disk.
FILLER_VIA = "filler"
#: ... and for the shared copy's pools, which only their owner could mount again.
SHARED_VIA = "fsfreeze (shared copy: pools of another session, not shut down)"
POOL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class Pool:
    """One storage pool: `volume` is the Docker volume name to mount in a container."""

    name: str
    volume: str
    site: str
    size_mb: int
    device: str


def pool_name(*parts: str) -> str:
    """A pool name from service and volume names: safe characters, bounded length."""
    raw = "-".join(parts).replace("@", "-at-")
    name = re.sub(r"[^a-zA-Z0-9_.-]", "_", raw).lstrip("._-") or "pool"
    if len(name) > 60:
        name = f"{name[:47]}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    return name


class StoragePools:
    """This session's pools: create, freeze, thaw, destroy. Refuses anything else."""

    def __init__(self, engine: Engine, helper: Helper) -> None:
        self.engine = engine
        self.helper = helper
        self._pools: dict[str, Pool] = {}
        self._lock = threading.Lock()
        #: Pools of another session (attach_pool), and those of them we froze: a catch-all
        #: thaw leaves the others alone (the owner's suite burn may hold them frozen).
        self._attached: set[str] = set()
        self._frozen_here: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def create_pool(self, name: str, size_mb: int, site: str) -> Pool:
        """Make the pool and its Docker volume; mount `Pool.volume` in the containers."""
        if not POOL_NAME.match(name) or ".." in name:
            raise FireError(f"bad pool name {name!r}: use letters, digits, '.', '_', '-'")
        with self._lock:
            if name in self._pools:
                raise FireError(f"pool {name!r} exists already")
        volume = self.engine.session.name("pool", name)
        request = PoolCreateRequest(name=name, size_mb=int(size_mb), volume=volume)
        device = self.helper.call(POOL_CREATE, request).result["device"]
        try:
            self.engine.retry(
                lambda: self.engine.client.volumes.create(
                    name=volume,
                    driver="local",
                    driver_opts={"type": "ext4", "device": device},
                    labels=self.engine.session.labels("pool", site=site, pool=name),
                )
            )
        except docker.errors.APIError as exc:
            self.helper.call(POOL_DESTROY, PoolRequest(name=name))
            raise FireError(f"cannot create the volume of pool {name}: {exc}") from None
        pool = Pool(name, volume, site, int(size_mb), device)
        with self._lock:
            self._pools[name] = pool
        return pool

    def attach_pool(self, pool: Pool, owner: str) -> Pool:
        """Freeze and thaw `pool` of session `owner` from here (`dcfire_share = session`):
        the agent mounts its loop device after checking the owner's tag on it. It is never
        detached or deleted from here; its owner destroys it."""
        number = int(pool.device.removeprefix("/dev/loop"))
        try:
            request = PoolAttachRequest(
                name=pool.name, session=owner, loop=number, volume=pool.volume
            )
            self.helper.call(POOL_ATTACH, request)
        except AgentError as exc:
            raise FireError(f"attaching pool {pool.name} of session {owner}: {exc}") from None
        with self._lock:
            self._pools[pool.name] = pool
            self._attached.add(pool.name)
        return pool

    def adopt(self, pools: Sequence[Pool]) -> None:
        """Make the pools of a kept system (same session, --dcfire-reuse) ours again; the
        agent adopted them from its journal."""
        with self._lock:
            self._pools.update({p.name: p for p in pools})

    def destroy(self, pool: Pool) -> None:
        """Thaw, remove the Docker volume, unmount, detach the loop device, delete the image.

        The containers that mount it must be removed first.
        """
        self._own([pool])
        self.helper.call(THAW, PoolsRequest(names=[pool.name]))
        try:
            self.engine.retry(lambda: self.engine.client.api.remove_volume(pool.volume, force=True))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise FireError(
                f"cannot remove the volume of pool {pool.name} (still mounted by a "
                f"container?): {exc.explanation or exc}"
            ) from None
        self.helper.call(POOL_DESTROY, PoolRequest(name=pool.name))
        with self._lock:
            self._pools.pop(pool.name, None)

    def close(self) -> list[str]:
        """Destroy every pool (the runtime's teardown); returns the problems met."""
        problems: list[str] = []
        for pool in list(self._pools.values()):
            try:
                self.destroy(pool)
            except (FireError, OSError) as exc:
                problems.append(f"pool {pool.name}: {exc}")
        return problems

    # -- queries ---------------------------------------------------------------------------

    def pools(self, sites: Iterable[str] | None = None) -> list[Pool]:
        """This session's pools, optionally only those of `sites`."""
        wanted = None if sites is None else set(sites)
        with self._lock:
            return [p for p in self._pools.values() if wanted is None or p.site in wanted]

    def for_containers(self, containers: Sequence[Any]) -> list[Pool]:
        """The pools mounted by `containers` (from the engine's view of their mounts)."""
        by_volume = {p.volume: p for p in self.pools()}
        found: dict[str, Pool] = {}
        for c in containers:
            info = self.engine.client.api.inspect_container(container_id(c))
            for mount in info.get("Mounts") or []:
                pool = by_volume.get(str(mount.get("Name", "")))
                if pool is not None:
                    found[pool.name] = pool
        return list(found.values())

    # -- faults ----------------------------------------------------------------------------

    def _own(self, pools: Sequence[Pool]) -> None:
        with self._lock:
            for p in pools:
                if self._pools.get(p.name) != p:
                    raise FireError(
                        f"refusing to freeze or thaw {p.name!r}: not a storage pool of "
                        f"session {self.engine.session.id}"
                    )

    def freeze(self, pools: Sequence[Pool]) -> FaultTiming:
        """Freeze all `pools` side by side: their I/O blocks until `thaw`."""
        started = monotonic_ms()
        if not self._check(pools):
            return FaultTiming("storage", "fsfreeze", 0.0, {})
        request = PoolsRequest(names=[p.name for p in pools])
        try:
            times = self.helper.call(FREEZE, request)
        except AgentError as exc:
            raise FireError(f"freeze {', '.join(p.name for p in pools)}: {exc}") from None
        with self._lock:
            self._frozen_here.update(p.name for p in pools)
        return _timing(times, times.result["frozen"], started)

    def thaw(self, pools: Sequence[Pool] | None = None) -> FaultTiming:
        """Thaw `pools` (default: all of this session's, and the attached ones it froze);
        thawing a thawed pool is a no-op."""
        started = monotonic_ms()
        if pools is None:
            with self._lock:
                frozen_here = set(self._frozen_here)
            pools = [
                p for p in self.pools() if p.name not in self._attached or p.name in frozen_here
            ]
        if not self._check(pools):
            return FaultTiming("storage", "fsfreeze", 0.0, {})
        request = PoolsRequest(names=[p.name for p in pools])
        try:
            times = self.helper.call(THAW, request)
        except AgentError as exc:
            raise FireError(f"thaw {', '.join(p.name for p in pools)}: {exc}") from None
        with self._lock:
            self._frozen_here.difference_update(p.name for p in pools)
        return _timing(times, times.result["thawed"], started)

    def shutdown(
        self, pools: Sequence[Pool], users: Mapping[str, list[WireTarget]] | None = None
    ) -> FaultTiming:
        """Shut the `pools` down as a power cut does: what was not fsynced (and committed
        by the journal) is lost, every I/O returns EIO until `remount`. `users`: the
        containers still running on each pool (a failed disk), journalled by the agent.

        Pools of a shared copy (`dcfire_share = session`) belong to the session that made
        them and are mounted by its helper too, so they could never be mounted again from
        here: they are frozen instead, and the via column says so."""
        started = monotonic_ms()
        if not self._check(pools):
            return FaultTiming("storage", SHUTDOWN_VIA, 0.0, {})
        own, shared = self._split(pools)
        timing = FaultTiming("storage", SHUTDOWN_VIA, 0.0, {})
        if own:
            request = PoolShutdownRequest(names=[p.name for p in own])
            if users:
                request["users"] = {p.name: users[p.name] for p in own if p.name in users}
            try:
                reply = self.helper.call(POOL_SHUTDOWN, request)
            except AgentError as exc:
                raise FireError(f"shut down {', '.join(p.name for p in own)}: {exc}") from None
            timing = _timing(reply, reply.result["shut"], started, SHUTDOWN_VIA)
        if shared:
            frozen = self.freeze(shared)
            timing.offsets_ms.update(frozen.offsets_ms)
            timing.latency_ms = max(timing.latency_ms, frozen.latency_ms)
            timing.method = f"{timing.method if own else ''}{'; ' if own else ''}{SHARED_VIA}"
        return timing

    def remount(self, pools: Sequence[Pool]) -> FaultTiming:
        """Mount shut-down `pools` again (their journals replay: the state as of the last
        commit); thaw the shared copy's. Every container that uses them must have exited."""
        started = monotonic_ms()
        if not self._check(pools):
            return FaultTiming("storage", "remount", 0.0, {})
        own, shared = self._split(pools)
        if shared:
            self.thaw(shared)
        if not own:
            return FaultTiming("storage", "remount", 0.0, {})
        try:
            reply = self.helper.call(POOL_REMOUNT, PoolsRequest(names=[p.name for p in own]))
        except AgentError as exc:
            raise FireError(f"mount {', '.join(p.name for p in own)} again: {exc}") from None
        return _timing(reply, reply.result["remounted"], started, "remount")

    def fill(self, pools: Sequence[Pool]) -> FaultTiming:
        """Fill the `pools` with a filler file of ours: writes fail with ENOSPC, reads work,
        until `unfill`. Only this session's pools (another's belong to its owner)."""
        started = monotonic_ms()
        if not self._check(pools):
            return FaultTiming("storage", FILLER_VIA, 0.0, {})
        self.refuse_shared(pools, "fill")
        try:
            reply = self.helper.call(POOL_FILL, PoolsRequest(names=[p.name for p in pools]))
        except AgentError as exc:
            raise FireError(f"fill {', '.join(p.name for p in pools)}: {exc}") from None
        return _timing(reply, reply.result["filled"], started, FILLER_VIA)

    def unfill(self, pools: Sequence[Pool]) -> FaultTiming:
        """Remove the filler files: the space is back."""
        started = monotonic_ms()
        if not self._check(pools):
            return FaultTiming("storage", FILLER_VIA, 0.0, {})
        try:
            reply = self.helper.call(POOL_UNFILL, PoolsRequest(names=[p.name for p in pools]))
        except AgentError as exc:
            raise FireError(f"empty {', '.join(p.name for p in pools)}: {exc}") from None
        return _timing(reply, reply.result["unfilled"], started, FILLER_VIA)

    def refuse_shared(self, pools: Sequence[Pool], what: str) -> None:
        shared = self._split(pools)[1]
        if shared:
            raise FireError(
                f"cannot {what} {', '.join(p.name for p in shared)}: pools of the shared copy "
                "belong to the session that made them (only freeze works there)"
            )

    def _split(self, pools: Sequence[Pool]) -> tuple[list[Pool], list[Pool]]:
        """(this session's pools, the shared copy's pools of another session)."""
        with self._lock:
            return (
                [p for p in pools if p.name not in self._attached],
                [p for p in pools if p.name in self._attached],
            )

    def _check(self, pools: Sequence[Pool]) -> bool:
        """False when there is nothing to do; FireError when a pool is not ours."""
        if not pools:
            return False
        self._own(pools)
        return True


def _timing(
    reply: Reply[Any], times: dict[str, float], started: float, via: str = "fsfreeze"
) -> FaultTiming:
    offsets = reply.offsets(dict(times), started)
    return FaultTiming("storage", via, max(offsets.values(), default=0.0), offsets)


class PoolVolumes:
    """The runtime's VolumeProvider: every named volume of an instance on a pool of its site.

    `volume_for` is called from the runtime's start threads before each container is
    created; it makes the pool once and returns the Docker volume name to bind.
    """

    def __init__(
        self,
        pools: StoragePools,
        topology: Topology | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.pools = pools
        self._sizes = dict(sizes or {})
        self._services = topology.services if topology is not None else ()
        if topology is not None:
            self._sizes.update({s.name: s.storage_mb for s in topology.sites})
        self._made: dict[tuple[str, str], Pool] = {}
        self._lock = threading.Lock()

    def volume_for(self, service: Service, volume: Volume) -> str:
        key = (service.name, volume.name)
        with self._lock:
            pool = self._made.get(key)
            if pool is None:
                size = self._sizes.get(service.site, DEFAULT_POOL_MB)
                pool = self.pools.create_pool(
                    pool_name(service.name, volume.name), size, service.site
                )
                self._made[key] = pool
        return pool.volume

    def adopt(self, pools: Sequence[Pool]) -> None:
        """The pools of a kept system (--dcfire-reuse), found by name."""
        by_name = {p.name: p for p in pools}
        with self._lock:
            for service in self._services:
                for volume in service.volumes:
                    pool = by_name.get(pool_name(service.name, volume.name))
                    if pool is not None:
                        self._made[(service.name, volume.name)] = pool

    def renew(self, service: Service) -> None:
        """Destroy the pools of `service`; the next `volume_for` makes them empty again."""
        with self._lock:
            made = [key for key in self._made if key[0] == service.name]
            pools = [self._made.pop(key) for key in made]
        for pool in pools:
            self.pools.destroy(pool)

    def close(self) -> None:
        problems = self.pools.close()
        if problems:
            raise FireError("; ".join(problems))


__all__ = ["FILLER_VIA", "SHUTDOWN_VIA", "Pool", "PoolVolumes", "StoragePools", "pool_name"]
