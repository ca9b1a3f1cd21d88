"""The fault layer as the fire controller sees it: one object per session that turns a fire's
effects (network, storage, kill, pause) into reversible steps on the session's helper.

Nested fires may touch the same containers (a partition around a fire of the same site):
each fault is reference-counted per container, applied on the first fire and undone on the
last, so an inner restore never heals a site that an outer fire still burns.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import docker.errors

from pytest_dcfire.diskfaults import DiskSpec
from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    PEER_UNCUT,
    THAW,
    UNCUT,
    PeerUncutRequest,
    PoolsRequest,
    UncutRequest,
    WireTarget,
)
from pytest_dcfire.faults.helper import Helper, HelperUnavailable, thawer
from pytest_dcfire.faults.network import NetworkCutter, Targets, container_id, wire
from pytest_dcfire.faults.peers import PeerCutter
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.faults.storage import SHUTDOWN_VIA, Pool, PoolVolumes, StoragePools
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.linkfaults import FlakySpec, PartitionSpec
from pytest_dcfire.modes import Effect, assert_never
from pytest_dcfire.runtime.adopt import STORAGE_NOT_OURS
from pytest_dcfire.runtime.engine import Engine, SessionIdentity
from pytest_dcfire.seams import Handle
from pytest_dcfire.steps import CallStep
from pytest_dcfire.topology.model import Service, Topology, Volume

if TYPE_CHECKING:
    from pytest_dcfire.runtime.system import System

Progress = Callable[[str], None]


class UnfrozenVolumes:
    """Plain labelled volumes, for engines that refuse the helper (no pools to freeze)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def volume_for(self, service: Service, volume: Volume) -> str:
        made = self.engine.client.volumes.create(
            self.engine.session.name(service.name, volume.name),
            labels=self.engine.session.labels("volume", site=service.site),
        )
        with self._lock:
            self._made.append(made)
        return str(made.name)

    def renew(self, service: Service) -> None:
        for volume in service.volumes:
            name = self.engine.session.name(service.name, volume.name)
            with contextlib.suppress(docker.errors.NotFound):
                self.engine.client.volumes.get(name).remove(force=True)

    def close(self) -> None:
        for volume in self._made:
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)


#: What a storage fault does, for the message when there are no pools.
VERBS = {"freeze": "freeze", "power-loss": "shut down", "fail": "fail", "full": "fill"}


def storage_kind(storage: bool | str) -> str:
    """A fire's `storage=` as a disk fault kind: True is a freeze."""
    return "freeze" if storage is True else str(storage)


def _not_ours(timing: FaultTiming) -> FaultTiming:
    """Say in the via column that adopted containers' storage was left alone."""
    if timing.method in ("no volumes", ""):
        timing.method = STORAGE_NOT_OURS
    else:
        timing.method = f"{timing.method}; adopted: {STORAGE_NOT_OURS}"
    return timing


class FaultBackend:
    """The session's helper, network cutter, storage pools and power switch."""

    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        progress: Progress,
        owner: SessionIdentity | None = None,
        keep_system: bool = False,
        helper_container: str | None = None,
        reusable: bool = False,
    ) -> None:
        self.engine = engine
        self.topology = topology
        self.progress = progress
        self.helper: Helper | None = None
        self.refused: str | None = None
        try:
            # A kept system's helper (--dcfire-reuse) holds its pools' mounts: a new agent
            # in it adopts the journal of the session that made it.
            self.helper = Helper(
                engine,
                progress,
                keep_system=keep_system,
                container=helper_container,
                reusable=reusable,
            ).start()
        except HelperUnavailable as exc:
            self.refused = str(exc)
            progress(
                f"the engine refused the helper container ({exc}); network cuts fall back to "
                "`docker network disconnect` and storage cannot be frozen"
            )
        self.targets = Targets(engine, owner)
        self.network = NetworkCutter(engine, self.targets, self.helper)
        self.power = PowerSwitch(engine, self.targets, self.helper)
        self.peers = PeerCutter(engine, self.targets, self.helper)
        self.pools = StoragePools(engine, self.helper) if self.helper is not None else None
        self.volumes: PoolVolumes | UnfrozenVolumes = (
            PoolVolumes(self.pools, topology) if self.pools is not None else UnfrozenVolumes(engine)
        )
        self._held: Counter[tuple[str, str]] = Counter()
        #: The storage fault kind that holds each pool (freeze, fail, full, power-loss).
        self._pool_kinds: dict[str, str] = {}
        self._lock = threading.Lock()
        self.system: System | None = None

    @property
    def method(self) -> str:
        return self.network.method

    def attach(self, system: System) -> None:
        self.system = system

    def warm(self) -> None:
        """Resolve every service container once, so the first fire costs what later ones do."""
        if self.system is not None and self.system.services:
            self.targets.resolve([h.container for h in self.system.services.values()])

    def attach_pools(self, pools: Sequence[Pool], owner: str) -> None:
        """Freeze and thaw another session's pools from our helper (`dcfire_share`)."""
        if self.pools is None:
            if pools:
                self.progress(
                    f"storage of the shared copy cannot be frozen from here: {self.refused}"
                )
            return
        for pool in pools:
            self.pools.attach_pool(pool, owner)

    def adopt_pools(self, pools: Sequence[Pool]) -> None:
        """Take over the pools of a kept system (--dcfire-reuse) as this session's own."""
        if self.pools is not None and isinstance(self.volumes, PoolVolumes):
            self.pools.adopt(pools)
            self.volumes.adopt(pools)

    def undo_leftovers(self) -> list[str]:
        """Undo whatever faults the agent adopted from the journal of a kept system: cuts,
        peer cuts, frozen pools. Returns what was undone; a pool left shut down by a power
        loss cannot come back under running containers and raises FireError."""
        if self.helper is None:
            return []
        status = self.helper.status()
        undone: list[str] = []
        if status["cuts"]:
            self.helper.call(UNCUT, UncutRequest(ids=sorted(status["cuts"])))
            undone += [f"network cut of {cid[:12]}" for cid in status["cuts"]]
        for name in sorted(status["peers"]):
            self.helper.call(PEER_UNCUT, PeerUncutRequest(name=name))
            undone.append(f"partition {name}")
        shut = [n for n, p in status["pools"].items() if p.get("shutdown")]
        if shut:
            raise FireError(f"pool(s) {', '.join(sorted(shut))} left shut down by a power loss")
        frozen = sorted(n for n, p in status["pools"].items() if p.get("frozen"))
        if frozen:
            self.helper.call(THAW, PoolsRequest(names=frozen))
            undone += [f"frozen pool {name}" for name in frozen]
        return undone

    def hold(self, effect: Effect, key: str) -> None:
        """Count a fault that someone else applied (the suite burn of a shared copy), so
        that our fires leave it in place and never undo it."""
        with self._lock:
            self._held[(effect, key)] += 1

    def thaw_dead(self, session: str, containers: list[Any]) -> None:
        if self.helper is not None:
            thawer(self.helper)(session, containers)

    # -- steps ----------------------------------------------------------------------------

    def make_step(
        self,
        effect: Effect,
        spec: FireSpec | PartitionSpec | FlakySpec | DiskSpec,
        handles: Sequence[Handle],
    ) -> CallStep:
        if isinstance(spec, (PartitionSpec, FlakySpec)):
            if effect != "peers":
                raise FireError(f"a partition has no {effect!r} effect")
            return self._peer_step(spec, handles)
        if isinstance(spec, DiskSpec):
            if effect != "disk":
                raise FireError(f"a disk fault has no {effect!r} effect")
            return self._pool_step(spec.kind, handles, spec.target)
        containers = [h.container for h in handles]
        if effect == "network":
            return self._counted(effect, containers, self.network.cut, self.network.restore)
        if effect == "kill":
            # The fire is in place when the engine sees the processes gone (a test body may
            # look at the containers at once). A power loss waits after its storage step
            # instead: the pools go down first, with no time for the kernel to write back.
            later = spec.mode == "power-loss" and "storage" in spec.effects()
            off = self.power.power_off if later else self._power_off_and_wait
            return self._counted(effect, containers, off, self._power_on)
        if effect == "pause":
            return self._counted(effect, containers, self.power.pause, self.power.unpause)
        if effect == "storage":
            return self._storage_step(spec, handles)
        if effect == "links" or effect == "peers" or effect == "disk":  # not a fire's own
            raise FireError(f"unknown effect {effect!r}")
        assert_never(effect)

    def _power_off_and_wait(self, containers: Sequence[Any]) -> FaultTiming:
        timing = self.power.power_off(containers)
        self.power.wait_exited(containers)
        return timing

    def _power_on(self, containers: Sequence[Any]) -> FaultTiming:
        timing = self.power.power_on(containers)
        # Started again in a new netns: the partitions they are in must cut them again.
        self.peers.rejoin(containers)
        return timing

    def _peer_step(self, spec: PartitionSpec | FlakySpec, handles: Sequence[Handle]) -> CallStep:
        """Cut the direct traffic between the groups' containers (adopted ones included:
        `handles` are every container of the sites at the moment of the partition), or make
        the target's containers flaky."""
        names: list[str] = []

        def cut() -> tuple[str, FaultTiming]:
            if isinstance(spec, FlakySpec):
                return self.peers.flaky([h for h in handles], spec.percent)
            groups = [[h for h in handles if h.site in group] for group in spec.groups]
            return self.peers.cut_groups(groups, one_way=spec.one_way)

        def do() -> FaultTiming:
            what = "flaky" if isinstance(spec, FlakySpec) else "partition"
            try:
                name, timing = cut()
            except FireError as exc:
                raise FireError(f"{what} {spec.describe()}: {exc}") from None
            if name:
                names.append(name)
            return timing

        def undo_fn() -> None:
            for name in names:
                self.peers.restore(name)
            names.clear()

        return CallStep("peers", do, undo_fn)

    def _counted(
        self,
        effect: Effect,
        containers: list[Any],
        apply: Callable[[Sequence[Any]], FaultTiming],
        undo: Callable[[Sequence[Any]], FaultTiming],
    ) -> CallStep:
        changed: list[Any] = []

        def do() -> FaultTiming:
            with self._lock:
                fresh = [c for c in containers if self._held[(effect, container_id(c))] == 0]
                for c in containers:
                    self._held[(effect, container_id(c))] += 1
            changed.extend(fresh)
            if not fresh:
                return FaultTiming(effect, "already in place", 0.0, {})
            return apply(fresh)

        def undo_fn() -> None:
            with self._lock:
                last = []
                for c in containers:
                    key = (effect, container_id(c))
                    self._held[key] -= 1
                    if self._held[key] <= 0:
                        del self._held[key]
                        if c in changed:
                            last.append(c)
            if last:
                undo(last)

        return CallStep(effect, do, undo_fn)

    def _storage_step(self, spec: FireSpec, handles: Sequence[Handle] = ()) -> CallStep:
        kind = "power-loss" if spec.mode == "power-loss" else storage_kind(spec.storage)
        return self._pool_step(kind, handles, "+".join(spec.sites), spec.sites)

    def _pool_step(
        self,
        kind: str,
        handles: Sequence[Handle],
        what: str,
        sites: Sequence[str] | None = None,
    ) -> CallStep:
        """The storage step of a fire (`sites`: their pools) or of a disk fault (the pools
        that `handles` mount): `kind` is freeze, fail, full or power-loss."""
        # Adopted containers keep their own storage: only the session's pools are touched.
        if any(getattr(h, "adopted", False) for h in handles):
            ours = [h for h in handles if not getattr(h, "adopted", False)]
            step = self._pool_step(kind, ours, what, sites)
            theirs = [h.container for h in handles if getattr(h, "adopted", False)]

            def apply_ours() -> FaultTiming:
                timing = _not_ours(step.apply())
                if kind == "power-loss":  # the kill step left the wait to this one
                    self.power.wait_exited(theirs)
                return timing

            return CallStep("storage", apply_ours, step.undo)
        if self.pools is None:
            raise FireError(
                f"cannot {VERBS.get(kind, kind)} the storage of {what}: the engine refused the "
                f"helper container ({self.refused}); use storage=False or mode='partition'"
            )
        pools = self.pools
        containers = [h.container for h in handles]
        chosen = pools.pools(sites) if sites is not None else pools.for_containers(containers)
        apply, undo = self._pool_ops(kind, containers)
        keys = [("storage", p.name) for p in chosen]
        changed: list[Any] = []
        counted: list[bool] = []

        def do() -> FaultTiming:
            with self._lock:
                self._check_kinds(kind, chosen, what)
                fresh = [p for p, k in zip(chosen, keys, strict=True) if self._held[k] == 0]
                for p, k in zip(chosen, keys, strict=True):
                    self._held[k] += 1
                    self._pool_kinds[p.name] = kind
                counted.append(True)
            changed.extend(fresh)
            if not fresh:
                if kind == "power-loss":
                    self.power.wait_exited(containers)
                via = "no volumes" if not chosen else "already in place"
                return FaultTiming("storage", via, 0.0, {})
            return apply(fresh)

        def undo_fn() -> None:
            with self._lock:
                if not counted:  # refused before it held anything
                    return
                counted.clear()
                for k in keys:
                    self._held[k] -= 1
                last = [
                    p
                    for p, k in zip(chosen, keys, strict=True)
                    if self._held[k] <= 0 and p in changed
                ]
                for p, k in zip(chosen, keys, strict=True):
                    if self._held[k] <= 0:
                        del self._held[k]
                        self._pool_kinds.pop(p.name, None)
            if last:
                undo(last)

        return CallStep("storage", do, undo_fn)

    def _check_kinds(self, kind: str, chosen: Sequence[Pool], what: str) -> None:
        """Two storage faults of different kinds on one pool cannot both hold (a frozen
        pool cannot fill, a failed one cannot freeze): refuse the second, naming the first."""
        for p in chosen:
            held = self._pool_kinds.get(p.name)
            if held is not None and held != kind and {held, kind} & {"fail", "full"}:
                raise FireError(
                    f"disk fault {kind!r} on {what}: pool {p.name} already has a {held!r} "
                    "fault; lift it first"
                )

    def _pool_ops(
        self, kind: str, containers: Sequence[Any]
    ) -> tuple[Callable[[Sequence[Pool]], FaultTiming], Callable[[Sequence[Pool]], object]]:
        """How each kind is applied to the chosen pools and undone."""
        pools = self._pools()
        if kind == "power-loss":

            def shut(chosen: Sequence[Pool]) -> FaultTiming:
                timing = pools.shutdown(chosen)
                self.power.wait_exited(containers)  # the kill step left the wait to us
                return timing

            def remount(chosen: Sequence[Pool]) -> FaultTiming:
                # The engine lets go of a pool when the last container that uses it exits.
                self.power.wait_exited(containers)
                return pools.remount(chosen)

            return shut, remount
        if kind == "fail":

            def fail(chosen: Sequence[Pool]) -> FaultTiming:
                pools.refuse_shared(chosen, "fail")
                users: dict[str, list[WireTarget]] = {}
                for c, mounted in self._running_users(chosen, containers):
                    for name in mounted:
                        users.setdefault(name, []).extend(wire(self.targets.resolve([c])))
                return pools.shutdown(chosen, users)

            return fail, lambda chosen: self._replace_disks(chosen, containers)
        if kind == "full":
            return pools.fill, pools.unfill
        return pools.freeze, pools.thaw

    def _pools(self) -> StoragePools:
        if self.pools is None:
            raise FireError(f"no storage pools: the engine refused the helper ({self.refused})")
        return self.pools

    def _killed(self, container: Any) -> bool:
        """Whether a fire (a crash) holds `container` killed: its own undo starts it."""
        with self._lock:
            return self._held[("kill", container_id(container))] > 0

    def _running_users(
        self, chosen: Sequence[Pool], containers: Sequence[Any]
    ) -> list[tuple[Any, set[str]]]:
        """The containers that mount some of `chosen` and run (no fire holds them killed),
        each with the names of the pools it mounts."""
        names = {p.name for p in chosen}
        found = []
        for c in containers:
            if self._killed(c):
                continue
            mounted = names & {p.name for p in self._pools().for_containers([c])}
            if mounted:
                found.append((c, mounted))
        return found

    def _replace_disks(self, chosen: Sequence[Pool], containers: Sequence[Any]) -> FaultTiming:
        """A failed disk comes back only once nothing mounts it: the containers that use it
        are killed (the disk replaced, the service rebooted), the pool is mounted again (its
        journal replays) and they are started, unless a fire keeps them powered off."""
        pools = self._pools()
        running = [c for c, _ in self._running_users(chosen, containers)]
        users = [c for c in containers if c in running or self._killed(c)]
        if running:
            self.power.power_off(running)
        self.power.wait_exited(users)
        timing = pools.remount(chosen)
        if running:
            self._power_on(running)
        timing.method = SHUTDOWN_VIA
        return timing

    # -- end of session -------------------------------------------------------------------

    def release(self) -> list[str]:
        """For --dcfire-keep: undo every fault but keep the helper and the pools."""
        problems: list[str] = []
        undos: list[tuple[str, Callable[[], object]]] = [
            ("peers", self.peers.restore),
            ("network", self.network.restore),
            ("pause", self.power.unpause),
        ]
        if self.pools is not None:
            undos.append(("storage", self.pools.thaw))
        for name, undo in undos:
            try:
                undo()
            except Exception as exc:
                problems.append(f"undo {name}: {exc}")
        return problems

    def close(self) -> list[str]:
        """Remove the helper last (the system's containers and pools are gone by now)."""
        problems = self.release()
        if self.helper is not None:
            try:
                self.helper.close()
            except Exception as exc:
                problems.append(f"helper: {exc}")
        return problems
