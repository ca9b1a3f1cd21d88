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
from typing import Any

import docker.errors

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    PEER_UNCUT,
    THAW,
    UNCUT,
    PeerUncutRequest,
    PoolsRequest,
    UncutRequest,
)
from pytest_dcfire.faults.helper import Helper, HelperUnavailable, thawer
from pytest_dcfire.faults.network import NetworkCutter, Targets, container_id
from pytest_dcfire.faults.peers import PeerCutter
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.faults.storage import Pool, PoolVolumes, StoragePools
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.fire import CallStep, FireSpec
from pytest_dcfire.linkfaults import FlakySpec, PartitionSpec
from pytest_dcfire.runtime.adopt import STORAGE_NOT_OURS
from pytest_dcfire.runtime.engine import Engine, SessionIdentity
from pytest_dcfire.topology.model import Service, Topology, Volume

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
        helper_container: str | None = None,
    ) -> None:
        self.engine = engine
        self.topology = topology
        self.progress = progress
        self.helper: Helper | None = None
        self.refused: str | None = None
        try:
            # A kept system's helper (--dcfire-reuse) holds its pools' mounts: a new agent
            # in it adopts the journal of the session that made it.
            self.helper = Helper(engine, progress, container=helper_container).start()
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
        self.volumes: Any = (
            PoolVolumes(self.pools, topology) if self.pools is not None else UnfrozenVolumes(engine)
        )
        self._held: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.system: Any = None

    @property
    def method(self) -> str:
        return self.network.method

    def attach(self, system: Any) -> None:
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

    def hold(self, effect: str, key: str) -> None:
        """Count a fault that someone else applied (the suite burn of a shared copy), so
        that our fires leave it in place and never undo it."""
        with self._lock:
            self._held[(effect, key)] += 1

    def thaw_dead(self, session: str, containers: list[Any]) -> None:
        if self.helper is not None:
            thawer(self.helper)(session, containers)

    # -- steps ----------------------------------------------------------------------------

    def make_step(
        self, effect: str, spec: FireSpec | PartitionSpec | FlakySpec, handles: Sequence[Any]
    ) -> CallStep:
        if isinstance(spec, (PartitionSpec, FlakySpec)):
            if effect != "peers":
                raise FireError(f"a partition has no {effect!r} effect")
            return self._peer_step(spec, handles)
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
        raise FireError(f"unknown effect {effect!r}")

    def _power_off_and_wait(self, containers: Sequence[Any]) -> FaultTiming:
        timing = self.power.power_off(containers)
        self.power.wait_exited(containers)
        return timing

    def _power_on(self, containers: Sequence[Any]) -> FaultTiming:
        timing = self.power.power_on(containers)
        # Started again in a new netns: the partitions they are in must cut them again.
        self.peers.rejoin(containers)
        return timing

    def _peer_step(self, spec: PartitionSpec | FlakySpec, handles: Sequence[Any]) -> CallStep:
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
        effect: str,
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

    def _storage_step(self, spec: FireSpec, handles: Sequence[Any] = ()) -> CallStep:
        # Adopted containers keep their own storage: only the session's pools can freeze.
        if any(getattr(h, "adopted", False) for h in handles):
            ours = [h for h in handles if not getattr(h, "adopted", False)]
            step = self._storage_step(spec, ours)
            theirs = [h.container for h in handles if getattr(h, "adopted", False)]

            def apply_ours() -> FaultTiming:
                timing = _not_ours(step.apply())
                if spec.mode == "power-loss":  # the kill step left the wait to this one
                    self.power.wait_exited(theirs)
                return timing

            return CallStep("storage", apply_ours, step.undo)
        if self.pools is None:
            raise FireError(
                f"cannot {'shut down' if spec.mode == 'power-loss' else 'freeze'} the storage "
                f"of {', '.join(spec.sites)}: the engine refused the "
                f"helper container ({self.refused}); use storage=False or mode='partition'"
            )
        pools = self.pools
        site_pools = pools.pools(spec.sites)
        apply: Callable[[Sequence[Pool]], FaultTiming] = pools.freeze
        undo: Callable[[Sequence[Pool]], object] = pools.thaw
        containers = [h.container for h in handles]
        if spec.mode == "power-loss":

            def apply(chosen: Sequence[Pool]) -> FaultTiming:
                timing = pools.shutdown(chosen)
                self.power.wait_exited(containers)  # the kill step left the wait to us
                return timing

            def undo(chosen: Sequence[Pool]) -> FaultTiming:
                # The engine lets go of a pool when the last container that uses it exits.
                self.power.wait_exited(containers)
                return pools.remount(chosen)

        keys = [("storage", p.name) for p in site_pools]
        changed: list[Any] = []

        def do() -> FaultTiming:
            with self._lock:
                fresh = [p for p, k in zip(site_pools, keys, strict=True) if self._held[k] == 0]
                for k in keys:
                    self._held[k] += 1
            changed.extend(fresh)
            if not fresh:
                if spec.mode == "power-loss":
                    self.power.wait_exited(containers)
                return FaultTiming(
                    "storage", "no volumes" if not site_pools else "already in place", 0.0, {}
                )
            return apply(fresh)

        def undo_fn() -> None:
            with self._lock:
                for k in keys:
                    self._held[k] -= 1
                last = [
                    p
                    for p, k in zip(site_pools, keys, strict=True)
                    if self._held[k] <= 0 and p in changed
                ]
                for k in keys:
                    if self._held[k] <= 0:
                        del self._held[k]
            if last:
                undo(last)

        return CallStep("storage", do, undo_fn)

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
