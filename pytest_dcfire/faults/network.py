"""Network cuts: blackhole every target container, both directions, all at once.

Method `nftables` (the normal one): the helper's agent adds one owned nftables table per
target netns (drop-policy input/output chains that accept loopback only), one atomic
netlink batch per netns, all targets in one request. Established TCP connections hang
(packets are dropped, never rejected, so no RST), new connections time out, loopback keeps
working, and so does Docker's embedded DNS (127.0.0.11 is reached over loopback inside the
netns): names of other containers still resolve in a burning container, and the burning
container's name still resolves elsewhere, as in a real outage where DNS lives outside the
building. ARP is untouched, so peers see timeouts rather than "no route to host". Nothing is
ever changed in the conntrack table: after a restore, connections that were only stalled
carry on (TCP retransmits).

Method `iptables` (old kernels without nf_tables): the same cut as a DCFIRE-<session>
chain jumped to from the top of INPUT and OUTPUT, applied by `iptables-restore --noflush`.

Method `disconnect` (engines that refuse the helper's capabilities): `docker network
disconnect` from every network, and on restore `connect` with the same IPv4 address and
aliases. It is ten times slower and established connections get errors instead of hanging;
the timing reports say which method ran.

Ownership: a target must be a running container that carries this session's labels (all
of them: session id, host, pid and pid start time, role "service"; for an xdist worker under
`dcfire_share = session`, those of the shared session it attached to) or that was adopted
explicitly; anything else is refused with FireError before any fault is applied. The
labels are checked through the engine once per container id (labels never change); the
pid is cached and re-inspected when the agent reports it stale (a restart).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker.errors

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    CUT,
    UNCUT,
    Backend,
    CutRequest,
    Op,
    UncutRequest,
    WireTarget,
)
from pytest_dcfire.faults.helper import AgentError, Helper, Reply
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.runtime.engine import L_ROLE, Engine, SessionIdentity, monotonic_ms

#: Parallel engine calls (inspect, disconnect, kill, pause).
MAX_PARALLEL = 16
Q = TypeVar("Q")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """A container the session may burn: full id, display name, current pid, and its IPv4
    addresses on every network it is on (as of the last inspection)."""

    id: str
    name: str
    pid: int
    addresses: tuple[str, ...] = ()


def container_id(obj: Any) -> str:
    """Accept a ServiceHandle, a docker Container or an id."""
    if isinstance(obj, str):
        return obj
    container = getattr(obj, "container", obj)
    cid = getattr(container, "id", None)
    if not isinstance(cid, str):
        raise FireError(f"{obj!r} is not a container")
    return cid


def display_name(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else None


def user_aliases(cid: str, aliases: Sequence[str]) -> list[str]:
    """A container's network aliases without the short id the engine adds by itself (it
    comes back on reconnect). Compared whole: an alias such as `a2` is a prefix of every id
    that starts with a2 (one in 256), and must not be dropped with it."""
    return [a for a in aliases if a not in (cid, cid[:12])]


def parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Run `fn` over `items` side by side; raise the first error after all have finished."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]


class Targets:
    """Which containers this session may burn, and their current pids (cached)."""

    def __init__(self, engine: Engine, owner: SessionIdentity | None = None) -> None:
        self.engine = engine
        #: Whose service containers these are: this session's, or (an xdist worker under
        #: `dcfire_share = session`) the shared session's.
        self.owner = owner if owner is not None else engine.session
        self._adopted: set[str] = set()
        self._cache: dict[str, Target] = {}
        self._lock = threading.Lock()

    def adopt(self, container: Any) -> None:
        """Allow a container that does not carry our labels (the user adopted it)."""
        cid = container_id(container)
        info = self.engine.retry(lambda: self.engine.client.api.inspect_container(cid))
        self._adopted.add(str(info["Id"]))

    def is_adopted(self, cid: str) -> bool:
        return cid in self._adopted

    def disown(self, cid: str) -> None:
        """Take an adopted container off the allow-list (it may be removed by its owner)."""
        with self._lock:
            self._adopted.discard(cid)
            self._cache.pop(cid, None)

    def forget(self, containers: Iterable[Any]) -> None:
        """Drop cached pids (after a restart)."""
        with self._lock:
            for c in containers:
                self._cache.pop(self._full(container_id(c)), None)

    def _full(self, cid: str) -> str:
        for known in self._cache:
            if known.startswith(cid):
                return known
        return cid

    def resolve(self, containers: Sequence[Any], refresh: bool = False) -> list[Target]:
        """Verify ownership and find pids; refuse the whole list if one is not ours."""
        wanted = [(container_id(c), display_name(c)) for c in containers]
        if not wanted:
            raise FireError("no containers to burn")
        with self._lock:
            cached = {cid: self._cache.get(self._full(cid)) for cid, _ in wanted}
        missing = [cid for cid, t in cached.items() if t is None or refresh]
        for target in parallel(self._inspect, missing):
            cached[target.id] = target
            for cid in missing:
                if target.id.startswith(cid):
                    cached[cid] = target
        out: list[Target] = []
        for cid, name in wanted:
            target = cached[cid]
            assert target is not None
            if name and name != target.name:
                target = dataclasses.replace(target, name=name)
            out.append(target)
        with self._lock:
            self._cache.update({t.id: t for t in out})
        if len({t.id for t in out}) != len(out):
            raise FireError("a container is named twice in one fire")
        return out

    def call_agent(
        self,
        helper: Helper,
        op: Op[Q, R],
        containers: Sequence[Any],
        request: Callable[[list[Target]], Q],
        targets: list[Target] | None = None,
    ) -> tuple[list[Target], Reply[R]]:
        """Call `op` with `request(targets)` (`targets` default: `containers` resolved);
        when the agent answers that a pid is stale (a container restarted since it was
        inspected), inspect them all again and retry once. Returns the targets the answered
        call was made with, and the reply."""
        if targets is None:
            targets = self.resolve(containers)
        try:
            return targets, helper.call(op, request(targets))
        except AgentError as exc:
            if exc.kind != "stale":
                raise
        targets = self.resolve(containers, refresh=True)
        return targets, helper.call(op, request(targets))

    def learn(self, infos: Iterable[Mapping[str, Any]]) -> None:
        """Cache targets from inspect data the caller already has (a kept system's
        containers, --dcfire-reuse), so that warming them costs no engine call."""
        targets = [self._target(info) for info in infos]
        with self._lock:
            self._cache.update({t.id: t for t in targets})

    def _inspect(self, cid: str) -> Target:
        try:
            info = self.engine.retry(lambda: self.engine.client.api.inspect_container(cid))
        except docker.errors.NotFound:
            raise FireError(f"container {cid[:12]} does not exist") from None
        return self._target(info)

    def _target(self, info: Mapping[str, Any]) -> Target:
        full = str(info["Id"])
        name = str(info.get("Name", "")).lstrip("/") or full[:12]
        self.check_owned(full, name, dict((info.get("Config") or {}).get("Labels") or {}))
        state = info.get("State") or {}
        if not state.get("Running"):
            raise FireError(f"container {name} is not running ({state.get('Status')})")
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        addresses = tuple(
            sorted({str(n["IPAddress"]) for n in networks.values() if n and n.get("IPAddress")})
        )
        return Target(full, name, int(state.get("Pid") or 0), addresses)

    def check_owned(self, cid: str, name: str, labels: dict[str, str]) -> None:
        if cid in self._adopted:
            return
        mismatch = self.owner.foreign_labels(labels, "service")
        if mismatch or labels.get(L_ROLE) != "service":
            raise FireError(
                f"refusing to touch container {name} ({cid[:12]}): it is not a service "
                f"container of session {self.owner.id} (labels differ: "
                f"{', '.join(sorted(mismatch)) or L_ROLE}) and was not adopted"
            )


class NetworkCutter:
    """Cuts and restores the network of containers; `method` says how."""

    def __init__(self, engine: Engine, targets: Targets, helper: Helper | None) -> None:
        self.engine = engine
        self.targets = targets
        self.helper = helper
        #: container id → how it was cut (and, for `disconnect`, what to reconnect).
        self._cut: dict[str, _CutState] = {}
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        return "nftables" if self.helper is not None else "disconnect"

    def is_cut(self, container: Any) -> bool:
        cid = container_id(container)
        return any(k.startswith(cid) for k in self._cut)

    def cut(self, containers: Sequence[Any], backend: Backend = "auto") -> FaultTiming:
        """Blackhole all `containers` at once; per-target offsets are from this call."""
        started = monotonic_ms()
        with self._lock:
            targets = self.targets.resolve(containers)
            already = [t.name for t in targets if t.id in self._cut]
            if already:
                raise FireError(f"already cut: {', '.join(already)}")
            if self.helper is None:
                return self._disconnect(targets, started)
            targets, reply = self.targets.call_agent(
                self.helper,
                CUT,
                containers,
                lambda ts: CutRequest(targets=wire(ts), backend=backend),
                targets,
            )
            method = reply.result["method"]
            for t in targets:
                self._cut[t.id] = _CutState(method, t.name)
            names = {t.id: t.name for t in targets}
            offsets = reply.offsets(
                {names[cid]: ms for cid, ms in reply.result["cuts"].items()}, started
            )
            return FaultTiming("network", method, max(offsets.values()), offsets)

    def restore(self, containers: Sequence[Any] | None = None) -> FaultTiming:
        """Undo the cuts on `containers` (default: every cut of this cutter)."""
        started = monotonic_ms()
        with self._lock:
            if containers is None:
                ids = list(self._cut)
            else:
                wanted = [container_id(c) for c in containers]
                ids = [k for k in self._cut if any(k.startswith(w) for w in wanted)]
            if not ids:
                return FaultTiming("network", self.method, 0.0, {})
            states = {cid: self._cut[cid] for cid in ids}
            method = next(iter(states.values())).method
            if method == "disconnect":
                timing = self._reconnect(states, started)
            else:
                assert self.helper is not None
                reply = self.helper.call(UNCUT, UncutRequest(ids=ids))
                # A helper that died meanwhile took its (owned) cuts with it: nothing to undo.
                times = {states[cid].name: ms for cid, ms in reply.result["restored"].items()}
                offsets = reply.offsets(times, started) if times else {}
                latency = max(offsets.values()) if offsets else monotonic_ms() - started
                timing = FaultTiming("network", method, latency, offsets)
            for cid in ids:
                self._cut.pop(cid, None)
            return timing

    # -- fallback: docker network disconnect / connect -------------------------------------

    def _disconnect(self, targets: list[Target], started: float) -> FaultTiming:
        api = self.engine.client.api
        offsets: dict[str, float] = {}

        def one(t: Target) -> None:
            info = api.inspect_container(t.id)
            nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
            saved: dict[str, dict[str, Any]] = {}
            for net_name, cfg in nets.items():
                ipam = cfg.get("IPAMConfig") or {}
                aliases = user_aliases(t.id, cfg.get("Aliases") or [])
                saved[str(cfg.get("NetworkID") or net_name)] = {
                    "ip": ipam.get("IPv4Address") or cfg.get("IPAddress") or None,
                    "aliases": aliases,
                    "links": cfg.get("Links") or None,
                }
            state = _CutState("disconnect", t.name, saved)
            self._cut[t.id] = state  # recorded first: a failure halfway is still undone
            for net_id in saved:
                self.engine.retry(
                    functools.partial(
                        api.disconnect_container_from_network, t.id, net_id, force=True
                    )
                )
            offsets[t.name] = monotonic_ms() - started

        parallel(one, targets)
        return FaultTiming("network", "disconnect", max(offsets.values()), offsets)

    def _reconnect(self, states: dict[str, _CutState], started: float) -> FaultTiming:
        api = self.engine.client.api
        offsets: dict[str, float] = {}

        def one(item: tuple[str, _CutState]) -> None:
            cid, state = item
            for net_id, cfg in state.networks.items():
                connect = functools.partial(
                    api.connect_container_to_network,
                    cid,
                    net_id,
                    aliases=cfg["aliases"] or None,
                )
                try:
                    try:
                        self.engine.retry(functools.partial(connect, ipv4_address=cfg["ip"]))
                    except docker.errors.APIError as exc:
                        # Networks without a configured subnet take no fixed address: the
                        # engine then picks one (the runtime's networks always have one).
                        if "user configured subnets" not in str(exc):
                            raise
                        self.engine.retry(connect)
                except docker.errors.APIError as exc:
                    if "already exists" not in str(exc):
                        raise FireError(f"reconnecting {state.name}: {exc}") from None
            offsets[state.name] = monotonic_ms() - started

        parallel(one, list(states.items()))
        return FaultTiming("network", "disconnect", max(offsets.values()), offsets)


@dataclass
class _CutState:
    method: str
    name: str
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)


def wire(targets: list[Target]) -> list[WireTarget]:
    """What the agent needs of each target (it verifies them itself)."""
    return [{"id": t.id, "pid": t.pid} for t in targets]


__all__ = [
    "NetworkCutter",
    "Target",
    "Targets",
    "container_id",
    "parallel",
    "user_aliases",
    "wire",
]
