"""Peer cuts: the direct traffic between two groups of containers, for `partition(a, b)`.

A partition between two sites (or two groups of sites) must be a real WAN cut: every packet
between a container of one site and a container of the other vanishes, both ways, while each
site still reaches itself, the other sites, the test process and Docker's DNS. The helper's
agent does it the way it cuts a site (method `nftables`: one owned table per container netns,
one atomic netlink batch each, all in one request), except that the table's chains accept
everything and drop only packets from (input) or to (output) the other groups' addresses.

Both groups get a table, each blocking the other's addresses. One side would suffice for
packets between the two groups' known addresses (each such packet crosses a netns of the
first group), but cutting both sides is what a WAN cut looks like from either building and
it does not depend on one group's address list being complete.

Addresses are every IPv4 address the containers have, on every network they are on (an
adopted container may be on networks the plugin did not create): the agent reads them from
each container's own netns (RTM_GETADDR) at the moment of the cut, so no engine call sits
on the ignition path (containers are checked with the engine once, as for fires).

Each peer cut has its own table name, so it composes with a fire's cut of the same
containers and with other partitions: undoing one never touches the others. A container
started again during a partition (a power-loss fire restored) gets its table back at once
(`rejoin`), with the addresses its peers had when the partition began.
A one-way partition a -> b gives b's containers only the input rule (from a's addresses)
and a's a table without rules: a's packets to b vanish on arrival, silently (dropped on a's
output instead, a UDP `sendto` would fail with EPERM), and b's packets to a pass. `flaky`
is a peer cut of another shape: each target drops `loss` percent of its packets from and to
every address but loopback (`numgen random mod 100 < loss`), so the traffic through the
Toxiproxy links (which enters the container's netns) loses them too; its own outgoing UDP
datagrams that are dropped fail `sendto` with EPERM (TCP just retransmits).
Method `iptables` (kernels without nf_tables) is a DCFP<n>-<session> chain of DROP rules
jumped to from INPUT and OUTPUT. Without the helper (an engine that refused its
capabilities) there is no peer cut: `cut()` raises FireError rather than letting a
partition silently leave the direct paths open.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import (
    PEER_CUT,
    PEER_REJOIN,
    PEER_UNCUT,
    Backend,
    PeerCutRequest,
    PeerRejoinRequest,
    PeerTarget,
    PeerUncutRequest,
)
from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.faults.network import Target, Targets, container_id, wire
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.runtime.engine import Engine, monotonic_ms


class PeerCutter:
    """Cuts and restores the direct traffic between two groups of containers."""

    def __init__(self, engine: Engine, targets: Targets, helper: Helper | None) -> None:
        self.engine = engine
        self.targets = targets
        self.helper = helper
        #: peer cut name -> (method, container id -> display name)
        self._active: dict[str, tuple[str, dict[str, str]]] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def active(self) -> list[str]:
        return list(self._active)

    def cut(
        self,
        side_a: Sequence[Any],
        side_b: Sequence[Any],
        backend: Backend = "auto",
        one_way: bool = False,
    ) -> tuple[str, FaultTiming]:
        """Drop everything between `side_a` and `side_b` (with `one_way`, only what `side_a`
        sends to `side_b`); returns the cut's name (for `restore`) and when it was in place
        in each container, from the start of this call."""
        return self.cut_groups([side_a, side_b], backend, one_way)

    def cut_groups(
        self, groups: Sequence[Sequence[Any]], backend: Backend = "auto", one_way: bool = False
    ) -> tuple[str, FaultTiming]:
        """Drop everything between containers of different groups. With `one_way` (two
        groups): only the second group's containers drop, on input, what comes from the
        first's addresses: packets from the first to the second vanish, the other way
        everything passes. (Not on the first group's output: a packet dropped on its way
        out fails the sender's `sendto` with EPERM, and a cut cable tells no one.)"""
        if one_way and len(groups) != 2:
            raise FireError("a one-way partition is between exactly two groups")
        if sum(1 for g in groups if g) < 2:
            return "", FaultTiming("peers", "no containers", 0.0, {})
        sizes = [len(g) for g in groups]

        def request(targets: list[Target]) -> list[PeerTarget]:
            wired = _sided(targets, sizes)
            if one_way:
                for item in wired:
                    item["drop"] = [] if item["side"] == 0 else ["in"]
            return wired

        what = "cut the direct traffic between the two sites"
        return self._apply([c for g in groups for c in g], request, backend, what)

    def flaky(
        self, containers: Sequence[Any], loss: int, backend: Backend = "auto"
    ) -> tuple[str, FaultTiming]:
        """Drop `loss` percent of the packets to and from each container, at random (each
        packet drawn on its own), from and to every address but loopback."""
        if not containers:
            return "", FaultTiming("peers", "no containers", 0.0, {})

        def request(targets: list[Target]) -> list[PeerTarget]:
            return [{"id": t.id, "pid": t.pid, "everyone": True, "loss": loss} for t in targets]

        return self._apply(containers, request, backend, "make the network flaky")

    def _apply(
        self,
        containers: Sequence[Any],
        request: Callable[[list[Target]], list[PeerTarget]],
        backend: Backend,
        what: str,
    ) -> tuple[str, FaultTiming]:
        started = monotonic_ms()
        if self.helper is None:
            raise FireError(
                f"cannot {what}: the engine refused the dcfire helper container, and only "
                "the helper can filter inside containers"
            )
        with self._lock:
            name = f"p{next(self._numbers)}"
            targets, reply = self.targets.call_agent(
                self.helper,
                PEER_CUT,
                containers,
                lambda ts: PeerCutRequest(name=name, targets=request(ts), backend=backend),
            )
            names = {t.id: t.name for t in targets}
            method = reply.result["method"]
            self._active[name] = (method, names)
            offsets = reply.offsets(
                {names[cid]: ms for cid, ms in reply.result["cuts"].items()}, started
            )
            return name, FaultTiming("peers", method, max(offsets.values()), offsets)

    def rejoin(self, containers: Sequence[Any]) -> None:
        """Cut `containers` again in every peer cut they belong to: started again after a
        power loss, they have a new netns without the peer table."""
        if self.helper is None:
            return
        with self._lock:
            for name, (_, names) in self._active.items():
                hit = [c for c in containers if container_id(c) in names]
                if hit:
                    targets = self.targets.resolve(hit, refresh=True)
                    request = PeerRejoinRequest(name=name, targets=wire(targets))
                    self.helper.call(PEER_REJOIN, request)

    def restore(self, name: str | None = None) -> FaultTiming:
        """Undo the peer cut `name` (default: every peer cut of this cutter)."""
        started = monotonic_ms()
        with self._lock:
            names = list(self._active) if name is None else [name]
            offsets: dict[str, float] = {}
            method = "nothing to undo"
            for each in names:
                entry = self._active.pop(each, None)
                if entry is None or self.helper is None:
                    continue
                method, display = entry
                reply = self.helper.call(PEER_UNCUT, PeerUncutRequest(name=each))
                restored = reply.result["restored"].items()
                times = {display.get(cid, cid[:12]): ms for cid, ms in restored}
                if times:
                    offsets.update(reply.offsets(times, started))
            latency = max(offsets.values()) if offsets else monotonic_ms() - started
            return FaultTiming("peers", method, latency, offsets)


def _sided(targets: list[Target], sizes: Sequence[int]) -> list[PeerTarget]:
    """Each target with its group number (`sizes`: how many of `targets`, in order, are in
    each group): the agent blocks the other groups' addresses in it."""
    sides = [side for side, size in enumerate(sizes) for _ in range(size)]
    return [
        {"id": t.id, "pid": t.pid, "side": side} for t, side in zip(targets, sides, strict=True)
    ]


__all__ = ["PeerCutter"]
