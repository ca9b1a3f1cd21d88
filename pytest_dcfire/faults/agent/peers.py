"""Peer cuts: a partition's direct traffic, one more owned table per target netns.

Table `inet dcfire_<session>_<name>`: a hash set of the other side's IPv4 addresses and
accept-policy input/output chains with one rule each (`ip saddr @peers drop` on input,
`ip daddr @peers drop` on output), so its cost does not grow with the number of peers. Its
own name, so it sits beside a fire's table in the same netns and each is removed on its
own. Journalled under "peers", re-applied by a restarted agent, undone by the dead-man
switch; the iptables fallback is a DCFP<name>-<session> chain of DROP rules.

Each target's rule has a shape (`nft.PeerRule`): a one-way partition gives the receiving
side only the input rule and the sending side no rule (its addresses are what the receivers
block); a flaky target drops a share of its packets (`numgen random`), from and to every
address but loopback.
"""

from __future__ import annotations

import contextlib
from typing import Any

from . import nft
from .cuts import PEER_RE, Cut, Netfilter, backend_of, entries, peer_chain, peer_rule
from .dispatch import Failed, Refused, handles
from .kernel import now_ms
from .netlink import NETLINK_ROUTE, ipv4_addresses
from .protocol import (
    PEER_CUT,
    PEER_REJOIN,
    PEER_UNCUT,
    CutEntry,
    PeerCutReply,
    PeerCutRequest,
    PeerRejoinReply,
    PeerRejoinRequest,
    PeerUncutRequest,
    UncutReply,
)
from .targets import Target, block_list, close_all, parse_targets

Pairs = list[tuple[Target, list[str], nft.PeerRule]]


class Peers:
    """The peer cuts of this session: name -> container id -> its table (or chain)."""

    def __init__(self, nf: Netfilter) -> None:
        self.nf = nf
        self.peers: dict[str, dict[str, Cut]] = {}

    def entries(self) -> dict[str, dict[str, CutEntry]]:
        return {name: entries(cuts) for name, cuts in self.peers.items()}

    def table(self, name: str) -> str:
        return f"{self.nf.table}_{name}"

    def chain(self, name: str) -> str:
        return peer_chain(name, self.nf.session)

    @handles(PEER_CUT)
    def op_peer_cut(self, request: PeerCutRequest) -> PeerCutReply:
        """Split the targets of side 0 from those of side 1: in each target's netns, drop
        every packet from or to an address of the other side (dropped, never rejected:
        connections hang, new ones time out), all targets or none.

        The addresses are read here, from the targets' own netns (RTM_GETADDR: every IPv4
        address on every interface but loopback), at the moment of the cut. A target may
        instead carry an explicit `block` list."""
        name = str(request.get("name", ""))
        if not PEER_RE.match(name):
            raise Refused(f"bad peer cut name {name!r}")
        if name in self.peers:
            raise Refused(f"peer cut {name!r} exists")
        backend = backend_of(request)
        raw: Any = request.get("targets")
        if not isinstance(raw, list) or not raw or not all(isinstance(i, dict) for i in raw):
            raise Refused("no targets")
        sides = [item.get("side") for item in raw]
        rules = [peer_rule(item) for item in raw]
        explicit = [
            []
            if rule.everyone
            else (None if item.get("block") is None else block_list(item["block"]))
            for item, rule in zip(raw, rules, strict=True)
        ]
        if any(
            b is None and (isinstance(s, bool) or not isinstance(s, int) or s < 0)
            for b, s in zip(explicit, sides, strict=True)
        ):
            raise Refused("each target needs a side (a group number), a block list or everyone")
        if backend == "iptables" and any(r.everyone for r in rules):
            raise Refused("a flaky target (everyone) needs nftables")
        targets = parse_targets(raw)
        try:
            found = {t.cid: self.own_addresses(t) for t in targets}
        except OSError:
            close_all(targets)
            raise
        pairs: Pairs = []
        for t, side, block, rule in zip(targets, sides, explicit, rules, strict=True):
            if block is None:
                others = [
                    o for o, s in zip(targets, sides, strict=True) if s is not None and s != side
                ]
                block = block_list([a for o in others for a in found[o.cid]])
            pairs.append((t, block, rule))
        t_prepared = now_ms()

        def nft_cut() -> dict[str, float]:
            done: dict[str, Cut] = {}
            times = self.nft_cut(name, pairs, done)
            self.peers[name] = done
            self.nf.save()
            return times

        method, times = self.nf.nft_or_ipt(
            backend, targets, nft_cut, lambda: self.ipt_cut(name, pairs)
        )
        return {"method": method, "cuts": times, "t_prepared": t_prepared, "addresses": found}

    def own_addresses(self, target: Target) -> list[str]:
        sock = self.nf.ns.netlink(target.netns, NETLINK_ROUTE)
        try:
            return ipv4_addresses(sock, self.nf.seq.take(1))
        finally:
            self.nf.graveyard.append(sock)  # closed after the reply (RCU grace period)

    def nft_cut(self, name: str, pairs: Pairs, into: dict[str, Cut]) -> dict[str, float]:
        table = self.table(name)
        shapes = {t.cid: (block, rule) for t, block, rule in pairs}

        def build(t: Target) -> tuple[bytes, int]:
            block, rule = shapes[t.cid]
            return nft.peer_batch(table, self.nf.seq.take(9), block, rule)

        times, socks = self.nf.nft_apply([t for t, _, _ in pairs], table, build)
        for (t, block, rule), sock in zip(pairs, socks, strict=True):
            into[t.cid] = Cut(t, "nftables", sock, block, rule)
        return times

    def ipt_cut(self, name: str, pairs: Pairs) -> dict[str, float]:
        self.peers[name] = {
            t.cid: Cut(t, "iptables", None, block, rule) for t, block, rule in pairs
        }
        self.nf.save()  # journalled first: an interrupt must still be undone
        try:
            return self.ipt_apply(name, pairs)
        except Failed:
            with contextlib.suppress(Failed):
                self.undo(name)
            raise

    def ipt_apply(self, name: str, pairs: Pairs) -> dict[str, float]:
        chain = self.chain(name)

        def rules(block: list[str], rule: nft.PeerRule) -> str:
            share = (
                f" -m statistic --mode random --probability {rule.loss / 100:.2f}"
                if rule.loss < 100
                else ""
            )
            lines = [f":{chain} - [0:0]"]
            if "in" in rule.drop:
                lines += [f"-A {chain} -s {a}/32{share} -j DROP" for a in block]
            if "out" in rule.drop:
                lines += [f"-A {chain} -d {a}/32{share} -j DROP" for a in block]
            lines += [f"-I INPUT 1 -j {chain}", f"-I OUTPUT 1 -j {chain}"]
            return "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"

        return self.nf.ipt_apply([(t, rules(block, rule)) for t, block, rule in pairs])

    @handles(PEER_REJOIN)
    def op_peer_rejoin(self, request: PeerRejoinRequest) -> PeerRejoinReply:
        """Cut restarted targets of a peer cut again: a container started again (power loss
        restored) has a new netns without its table. Targets whose netns is the one already
        cut are left as they are."""
        name = str(request.get("name", ""))
        cuts = self.peers.get(name)
        if not PEER_RE.match(name) or cuts is None:
            raise Refused(f"no peer cut {name!r}")
        targets = parse_targets(request.get("targets"))
        fresh: Pairs = []
        for t in targets:
            old = cuts.get(t.cid)
            if old is None or old.target.netns_ino == t.netns_ino:
                t.close()
                continue
            fresh.append((t, list(old.block or []), old.rule))
        if not fresh:
            return {"cuts": {}}
        method = cuts[fresh[0][0].cid].method
        if method == "nftables":
            into: dict[str, Cut] = {}
            times = self.nft_cut(name, fresh, into)
        else:
            times = self.ipt_apply(name, fresh)
            into = {t.cid: Cut(t, "iptables", None, block, rule) for t, block, rule in fresh}
        for cid, cut in into.items():
            old = cuts[cid]
            if old.sock is not None:
                self.nf.graveyard.append(old.sock)
            old.target.close()
            cuts[cid] = cut
        self.nf.save()
        return {"method": method, "cuts": times}

    def undo(self, name: str) -> dict[str, float]:
        cuts = self.peers[name]
        try:
            return self.nf.undo(cuts, list(cuts), self.table(name), self.chain(name))
        finally:
            if not cuts:
                del self.peers[name]
                self.nf.save()

    def undo_all(self) -> None:
        for name in list(self.peers):
            with contextlib.suppress(Exception):
                self.undo(name)

    @handles(PEER_UNCUT)
    def op_peer_uncut(self, request: PeerUncutRequest) -> UncutReply:
        """Undo one peer cut everywhere (a name never cut, or already undone, is not an
        error: a helper that died took its owned tables with it)."""
        name = str(request.get("name", ""))
        if not PEER_RE.match(name):
            raise Refused(f"bad peer cut name {name!r}")
        if name not in self.peers:
            return {"restored": {}, "not_cut": [name]}
        return {"restored": self.undo(name), "not_cut": []}

    def adopt(self, journal: dict[str, Any]) -> list[str]:
        """Peer cuts go on across an agent restart too, on the same terms as cuts."""
        for name, cuts in journal.items():
            if not PEER_RE.match(str(name)) or not isinstance(cuts, dict):
                continue
            again: Pairs = []
            kept: dict[str, Cut] = {}
            for cid, cut in cuts.items():
                try:
                    target = Target(str(cid), int(cut["pid"]))
                    block = block_list(cut.get("block"))
                    rule = peer_rule(cut)
                except (Refused, OSError, KeyError, ValueError, TypeError):
                    continue
                if target.netns_ino != cut.get("netns"):
                    target.close()
                elif cut.get("method") == "iptables":
                    kept[target.cid] = Cut(target, "iptables", None, block, rule)
                else:
                    again.append((target, block, rule))
            if again:
                try:
                    self.nft_cut(str(name), again, kept)
                except OSError:
                    close_all([t for t, _, _ in again])
            if kept:
                self.peers[str(name)] = kept
        return sorted(self.peers)
