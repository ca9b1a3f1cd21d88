"""Network cuts: one owned nftables table per target netns (iptables on kernels without
nf_tables), applied all or nothing, undone explicitly or by the kernel when the agent dies.

A cut is table `inet dcfire_<session>` with input and output base chains (priority -300,
policy drop) whose only rule accepts loopback. The agent `setns()`es into the target's
netns just long enough to open a NETLINK_NETFILTER socket there, then sends one atomic
batch per netns; the kernel applies it inside `send()`, so "cut in place" is when `send()`
returns. The table carries NFT_TABLE_F_OWNER: it belongs to the socket, so if the agent dies
by any means the kernel drops the cut by itself and no rule can ever leak into a container.
Kernels without nf_tables (or the owner flag) fall back to `iptables-restore --noflush` run
through `nsenter` on a pinned netns fd: a DCFIRE-<session> chain, journalled before it is
applied and undone explicitly.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from . import nft
from .dispatch import Failed, Refused, handles
from .kernel import now_ms
from .netlink import Sequence, acks
from .protocol import (
    BACKENDS,
    CUT,
    UNCUT,
    UNCUT_FOREIGN,
    Backend,
    CutEntry,
    CutMethod,
    CutReply,
    CutRequest,
    UncutForeignReply,
    UncutForeignRequest,
    UncutReply,
    UncutRequest,
)
from .targets import NetnsSwitch, Target, close_all, parse_targets

SESSION_RE = re.compile(r"^[a-z0-9]{1,32}$")
#: A peer cut's name (the client numbers them): part of its nftables table and iptables chain.
PEER_RE = re.compile(r"^[a-z0-9]{1,10}$")
#: What a kernel without nf_tables answers: fall back to iptables (unless nftables was asked).
NO_NFTABLES = (
    errno.EPROTONOSUPPORT,
    errno.EAFNOSUPPORT,
    errno.EOPNOTSUPP,
    errno.ENOENT,
    errno.EINVAL,
)


def cut_chain(session: str) -> str:
    return f"DCFIRE-{session}"[:28]


def peer_chain(name: str, session: str) -> str:
    return f"DCFP{name}-{session}"[:28]


def backend_of(request: Any) -> Backend:
    backend = str(request.get("backend", "auto"))
    for known in BACKENDS:
        if backend == known:
            return known
    raise Refused(f"unknown backend {backend!r}")


class Cut:
    """One applied cut (or, with `block`, one peer cut), kept until it is undone."""

    def __init__(
        self,
        target: Target,
        method: CutMethod,
        sock: socket.socket | None,
        block: list[str] | None = None,
        rule: nft.PeerRule = nft.PARTITION,
    ) -> None:
        self.target = target
        self.method = method
        self.sock = sock
        self.block = block
        self.rule = rule

    def journal(self) -> CutEntry:
        entry: CutEntry = {
            "pid": self.target.pid,
            "netns": self.target.netns_ino,
            "method": self.method,
        }
        if self.block is not None:
            entry["block"] = self.block
        if self.rule != nft.PARTITION:
            entry["drop"] = list(self.rule.drop)
            entry["loss"] = self.rule.loss
            entry["everyone"] = self.rule.everyone
        return entry


def peer_rule(raw: Any) -> nft.PeerRule:
    """A peer target's (or journal entry's) rule shape, checked."""
    drop = raw.get("drop", ["in", "out"])
    loss = raw.get("loss", 100)
    everyone = raw.get("everyone", False)
    if not isinstance(drop, list) or not set(drop) <= {"in", "out"}:
        raise Refused(f"drop must be a list of 'in', 'out', got {drop!r}")
    if isinstance(loss, bool) or not isinstance(loss, int) or not 1 <= loss <= 100:
        raise Refused(f"loss must be a percent from 1 to 100, got {loss!r}")
    if not isinstance(everyone, bool):
        raise Refused(f"everyone must be true or false, got {everyone!r}")
    order = tuple(d for d in ("in", "out") if d in drop)
    return nft.PeerRule(order, loss, everyone)


def entries(cuts: dict[str, Cut]) -> dict[str, CutEntry]:
    return {cid: cut.journal() for cid, cut in cuts.items()}


def in_threads(fn: Callable[..., None], items: list[Any]) -> None:
    """`fn(*item)` for each item, side by side (each one a subprocess or a syscall that
    blocks), and wait for all of them."""
    threads = [threading.Thread(target=fn, args=item) for item in items]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def ipt_rules(chain: str, apply: bool) -> str:
    """The iptables-restore input that adds (or removes) a site cut in `chain`."""
    if apply:
        body = (
            f":{chain} - [0:0]\n-A {chain} -i lo -j ACCEPT\n-A {chain} -o lo -j ACCEPT\n"
            f"-A {chain} -j DROP\n-I INPUT 1 -j {chain}\n-I OUTPUT 1 -j {chain}\n"
        )
    else:
        body = f"-D INPUT -j {chain}\n-D OUTPUT -j {chain}\n-F {chain}\n-X {chain}\n"
    return f"*filter\n{body}COMMIT\n"


def iptables(netns_fd: int, rules: str) -> None:
    """`iptables-restore --noflush` inside the netns `netns_fd`."""
    proc = subprocess.run(
        ["nsenter", f"--net=/proc/self/fd/{netns_fd}", "iptables-restore", "-w", "--noflush"],
        input=rules,
        text=True,
        capture_output=True,
        pass_fds=(netns_fd,),
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        raise Failed(f"iptables-restore: {proc.stderr.strip()[:300]}")


class Netfilter:
    """What cuts and peer cuts share: the netns switch, the netlink sequence, the choice of
    nftables or iptables, all-or-nothing batches, and removal."""

    def __init__(self, session: str, save: Callable[[], None]) -> None:
        self.session = session
        self.table = f"dcfire_{session}"
        self.save = save
        self.ns = NetnsSwitch()
        self.seq = Sequence()
        self.nft_ok: bool | None = None
        #: Sockets to close after the reply: a netlink close waits for an RCU grace period
        #: (~10 ms), which must not delay a restore.
        self.graveyard: list[socket.socket] = []
        #: How iptables rules are applied (a seam for unit tests).
        self.iptables: Callable[[int, str], None] = iptables

    def bury(self) -> None:
        """Close the sockets of the last request in the background."""
        if not self.graveyard:
            return
        dead, self.graveyard = self.graveyard, []
        for sock in dead:
            threading.Thread(target=sock.close, daemon=True).start()

    def nft_or_ipt(
        self,
        backend: Backend,
        targets: list[Target],
        nft_cut: Callable[[], dict[str, float]],
        ipt_cut: Callable[[], dict[str, float]],
    ) -> tuple[CutMethod, dict[str, float]]:
        """nftables unless iptables was asked for or the kernel has no nf_tables (then
        iptables, unless nftables was demanded); the targets are closed if it fails."""
        if backend != "iptables" and self.nft_ok is not False:
            try:
                return "nftables", nft_cut()
            except OSError as exc:
                if backend == "nftables" or exc.errno not in NO_NFTABLES:
                    close_all(targets)
                    raise
                self.nft_ok = False
        return "iptables", ipt_cut()

    def nft_apply(
        self,
        targets: list[Target],
        table: str,
        build: Callable[[Target], tuple[bytes, int]],
    ) -> tuple[dict[str, float], list[socket.socket]]:
        """Send `build(target)` into every target's netns; all or nothing. Returns when each
        batch was committed, and the sockets that now own the tables (one per target).

        A socket is opened in every netns first, then the batches go back to back. Tables
        are always owned by their socket: a kernel without owned tables (< 5.12) answers
        EINVAL or EOPNOTSUPP and the caller falls back to journalled iptables, so an
        nftables cut can never outlive this agent.
        """
        socks: list[socket.socket] = []
        try:
            for t in targets:
                socks.append(self.ns.netlink(t.netns))
        except OSError:
            self.graveyard.extend(socks)
            raise
        times: dict[str, float] = {}
        sent: list[tuple[Target, socket.socket, int]] = []
        error: OSError | None = None
        for t, sock in zip(targets, socks, strict=True):
            batch, n = build(t)
            try:
                sock.sendall(batch)  # the kernel commits the batch inside this call
            except OSError as exc:
                error = exc
                break
            times[t.cid] = now_ms()
            sent.append((t, sock, n))
        if error is None:
            for _, sock, n in sent:
                try:
                    acks(sock, n)
                except OSError as exc:
                    error = exc
                    break
        if error is not None:  # all or nothing: remove what did go in
            for _, sock, _ in sent:
                with contextlib.suppress(OSError):
                    sock.sendall(nft.delete_batch(table, self.seq.take(2))[0])
            self.graveyard.extend(socks)
            raise error
        self.nft_ok = True
        return times, socks

    def ipt_apply(self, items: list[tuple[Target, str]]) -> dict[str, float]:
        """Apply iptables `rules` to each target side by side; raise Failed naming every
        target that refused."""
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(t: Target, rules: str) -> None:
            try:
                self.iptables(t.netns, rules)
                times[t.cid] = now_ms()
            except (Failed, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{t.cid[:12]}: {exc}")

        in_threads(one, items)
        if errors:
            raise Failed("; ".join(errors))
        return times

    def undo(
        self, cuts: dict[str, Cut], ids: list[str], table: str, chain: str
    ) -> dict[str, float]:
        """Remove the tables (or chains) `table`/`chain` of `cuts[id]` for `ids`, forget
        them, and journal; raise Failed naming what could not be removed after trying every
        one. A target whose netns is gone needs nothing."""
        times: dict[str, float] = {}
        pending: list[tuple[str, socket.socket, int]] = []
        errors: list[str] = []
        for cid in ids:
            cut = cuts[cid]
            if cut.method == "nftables" and cut.sock is not None:
                batch, n = nft.delete_batch(table, self.seq.take(2))
                try:
                    cut.sock.sendall(batch)
                    times[cid] = now_ms()
                    pending.append((cid, cut.sock, n))
                except OSError as exc:
                    errors.append(f"{cid[:12]}: {exc}")
        ipt = [cid for cid in ids if cuts[cid].method == "iptables"]
        if ipt:
            rules = ipt_rules(chain, apply=False)

            def one(cid: str) -> None:
                try:
                    self.iptables(cuts[cid].target.netns, rules)
                except Failed as exc:
                    if "No chain" not in str(exc) and "does not exist" not in str(exc):
                        errors.append(f"{cid[:12]}: {exc}")
                times[cid] = now_ms()

            in_threads(one, [(cid,) for cid in ipt])
        for cid, sock, n in pending:
            try:
                acks(sock, n)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: the table is already gone
                    errors.append(f"{cid[:12]}: {exc}")
        for cid in ids:
            cut = cuts.pop(cid)
            if cut.sock is not None:
                self.graveyard.append(cut.sock)
            cut.target.close()
        self.save()
        if errors:
            raise Failed("; ".join(errors))
        return times


class Cuts:
    """The site cuts of this session: container id -> its cut."""

    def __init__(self, nf: Netfilter) -> None:
        self.nf = nf
        self.session = nf.session
        self.chain = cut_chain(nf.session)
        self.cuts: dict[str, Cut] = {}

    def entries(self) -> dict[str, CutEntry]:
        return entries(self.cuts)

    @handles(CUT)
    def op_cut(self, request: CutRequest) -> CutReply:
        """Cut every target, all or nothing; report when each cut was in place."""
        backend = backend_of(request)
        targets = parse_targets(request.get("targets"))
        already = [t.cid[:12] for t in targets if t.cid in self.cuts]
        if already:
            close_all(targets)
            raise Refused(f"already cut: {', '.join(already)}")
        t_prepared = now_ms()
        method, times = self.nf.nft_or_ipt(
            backend, targets, lambda: self.nft_cut(targets), lambda: self.ipt_cut(targets)
        )
        return {"method": method, "cuts": times, "t_prepared": t_prepared}

    def nft_cut(self, targets: list[Target]) -> dict[str, float]:
        table = self.nf.table
        times, socks = self.nf.nft_apply(
            targets, table, lambda t: nft.cut_batch(table, self.nf.seq.take(5))
        )
        for t, sock in zip(targets, socks, strict=True):
            self.cuts[t.cid] = Cut(t, "nftables", sock)
        self.nf.save()  # after the cuts: they are in place before this costs time
        return times

    def ipt_cut(self, targets: list[Target]) -> dict[str, float]:
        for t in targets:  # journalled first: an interrupt must still be undone
            self.cuts[t.cid] = Cut(t, "iptables", None)
        self.nf.save()
        rules = ipt_rules(self.chain, apply=True)
        try:
            return self.nf.ipt_apply([(t, rules) for t in targets])
        except Failed:
            self.undo([t.cid for t in targets])
            raise

    @handles(UNCUT)
    def op_uncut(self, request: UncutRequest) -> UncutReply:
        ids = request.get("ids")
        if ids is None:
            ids = list(self.cuts)
        unknown = [str(i)[:12] for i in ids if i not in self.cuts]
        done = self.undo([i for i in ids if i in self.cuts])
        return {"restored": done, "not_cut": unknown}

    def undo(self, ids: list[str]) -> dict[str, float]:
        """Remove the cuts on `ids`."""
        return self.nf.undo(self.cuts, ids, self.nf.table, self.chain)

    def undo_all(self) -> None:
        with contextlib.suppress(Exception):
            self.undo(list(self.cuts))

    def adopt(self, journal: dict[str, Any]) -> list[str]:
        """Keep the fire burning across an agent restart.

        iptables cuts are still in their netns. nftables cuts went with the previous
        agent's sockets and are made again, at once. Either way only where the container
        still runs in the same netns: a restarted container lost its cut with the old one.
        """
        again: list[Target] = []
        for cid, cut in journal.items():
            try:
                target = Target(str(cid), int(cut["pid"]))
            except (Refused, OSError, KeyError, ValueError):
                continue
            if target.netns_ino != cut.get("netns"):
                target.close()
            elif cut.get("method") == "iptables":
                self.cuts[target.cid] = Cut(target, "iptables", None)
            else:
                again.append(target)
        if again:
            try:
                self.nft_cut(again)
            except OSError:
                close_all(again)
        return sorted(self.cuts)

    @handles(UNCUT_FOREIGN)
    def op_uncut_foreign(self, request: UncutForeignRequest) -> UncutForeignReply:
        """Undo the iptables cuts (and iptables peer cuts named in `peers`) of a dead session
        (its journal, read by `reap`)."""
        session = str(request.get("session", self.session))
        if not SESSION_RE.match(session):
            raise Refused(f"bad session id {session!r}")
        peers = request.get("peers") or []
        if not isinstance(peers, list) or not all(PEER_RE.match(str(p)) for p in peers):
            raise Refused(f"bad peer cut names {peers!r}")
        chains = [cut_chain(session)] + [peer_chain(str(p), session) for p in peers]
        undo = [ipt_rules(chain, apply=False) for chain in chains]
        done: list[str] = []
        for t in parse_targets(request.get("targets")):
            try:
                for rules in undo:
                    try:
                        self.nf.iptables(t.netns, rules)
                        if t.cid not in done:
                            done.append(t.cid)
                    except Failed:
                        pass  # nothing there any more (a new netns after a restart)
            finally:
                t.close()
        return {"restored": done}
