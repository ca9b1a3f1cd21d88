"""The agent's nftables batches, byte for byte and message by message (no kernel needed).

The expected bytes were produced by the agent before it became a package: a change here is
a change of what the kernel is asked to do, and needs a Docker run of the network tests.
"""

from __future__ import annotations

import hashlib
import struct

from pytest_dcfire.faults.agent import netlink, nft

#: cut_batch("dcfire_abc123", 100)
CUT = bytes.fromhex(
    "140000001000010064000000000000000000000a30000000000a050665000000000000000100000012000100"
    "6463666972655f616263313233000000080002000000000258000000030a0504660000000000000001000000"
    "120001006463666972655f61626331323300000007000300696e000014000480080001000000000108000200"
    "fffffed408000500000000000b00070066696c7465720000b4000000060a050c670000000000000001000000"
    "120001006463666972655f61626331323300000007000200696e00008400048024000180090001006d657461"
    "0000000014000280080002000000000408000100000000012c00018008000100636d70002000028008000100"
    "0000000108000200000000000c0003800800010001000000300001800e000100696d6d656469617465000000"
    "1c0002800800010000000000100002800c000280080001000000000158000000030a05046800000000000000"
    "01000000120001006463666972655f616263313233000000080003006f757400140004800800010000000003"
    "08000200fffffed408000500000000000b00070066696c7465720000b4000000060a050c6900000000000000"
    "01000000120001006463666972655f616263313233000000080002006f757400840004802400018009000100"
    "6d6574610000000014000280080002000000000508000100000000012c00018008000100636d700020000280"
    "080001000000000108000200000000000c0003800800010001000000300001800e000100696d6d6564696174"
    "650000001c0002800800010000000000100002800c000280080001000000000114000000110001006a000000"
    "000000000000000a"
)
#: delete_batch("dcfire_abc123", 300)
DELETE = bytes.fromhex(
    "14000000100001002c010000000000000000000a28000000020a05002d010000000000000100000012000100"
    "6463666972655f61626331323300000014000000110001002e010000000000000000000a"
)
#: sha256 of peer_batch("dcfire_abc123_p1", 200, ["10.0.0.2", "172.18.0.5"]) and of the
#: same with no addresses
PEER_SHA = "da5ab4390ed198ebf4313647c4989740c3deb2fd1697643d2e73017dd5119cdf"
PEER_EMPTY_SHA = "99b103c51322c72da070ba96c475bd0af3509307087b9a3bedf78a5027567d73"

BEGIN, END = nft.NFNL_MSG_BATCH_BEGIN, nft.NFNL_MSG_BATCH_END


def decoded(batch: bytes) -> list[tuple[int, int, int, dict[int, bytes]]]:
    """(type, flags, seq, top-level attributes) of each message of a batch."""
    out = []
    for mtype, offset, length in netlink.split(batch):
        _, _, flags, seq, _ = netlink.NLMSGHDR.unpack_from(batch, offset)
        start = offset + netlink.NLMSGHDR.size + netlink.NFGENMSG.size
        attrs = netlink.attributes(batch, start, offset + length)
        out.append((mtype, flags, seq, {k & ~netlink.NLA_F_NESTED: v for k, v in attrs.items()}))
    return out


def test_cut_batch_is_unchanged() -> None:
    batch, acks = nft.cut_batch("dcfire_abc123", 100)
    assert batch == CUT
    assert acks == 5


def test_peer_and_delete_batches_are_unchanged() -> None:
    peer, acks = nft.peer_batch("dcfire_abc123_p1", 200, ["10.0.0.2", "172.18.0.5"])
    assert hashlib.sha256(peer).hexdigest() == PEER_SHA
    assert acks == 7
    empty, acks = nft.peer_batch("dcfire_abc123_p1", 200, [])
    assert hashlib.sha256(empty).hexdigest() == PEER_EMPTY_SHA
    assert acks == 6  # no elements message
    assert nft.delete_batch("dcfire_abc123", 300) == (DELETE, 1)


def test_cut_batch_is_one_owned_table_with_two_drop_chains() -> None:
    msgs = decoded(nft.cut_batch("dcfire_s1", 7)[0])
    kinds = [m[0] for m in msgs]
    t = nft.nft_type
    assert kinds == [
        BEGIN,
        t(nft.NFT_MSG_NEWTABLE),
        t(nft.NFT_MSG_NEWCHAIN),
        t(nft.NFT_MSG_NEWRULE),
        t(nft.NFT_MSG_NEWCHAIN),
        t(nft.NFT_MSG_NEWRULE),
        END,
    ]
    assert [m[2] for m in msgs] == list(range(7, 14))
    assert all(m[1] & netlink.NLM_F_ACK for m in msgs[1:-1])
    table = msgs[1][3]
    assert table[nft.NFTA_TABLE_NAME] == b"dcfire_s1\0"
    assert struct.unpack(">I", table[nft.NFTA_TABLE_FLAGS]) == (nft.NFT_TABLE_F_OWNER,)
    assert msgs[1][1] & netlink.NLM_F_EXCL  # never reuse a table someone else made
    for chain, name in ((msgs[2][3], b"in\0"), (msgs[4][3], b"out\0")):
        assert chain[nft.NFTA_CHAIN_NAME] == name
        assert struct.unpack(">I", chain[nft.NFTA_CHAIN_POLICY]) == (nft.NF_DROP,)
        hook = netlink.attributes(chain[nft.NFTA_CHAIN_HOOK], 0, len(chain[nft.NFTA_CHAIN_HOOK]))
        assert struct.unpack(">i", hook[nft.NFTA_HOOK_PRIORITY]) == (nft.CHAIN_PRIORITY,)


def test_peer_batch_puts_every_address_in_one_set() -> None:
    addresses = [f"10.0.{i // 256}.{i % 256}" for i in range(1, 300)]
    msgs = decoded(nft.peer_batch("dcfire_s1_p1", 1, addresses)[0])
    assert len(msgs) == 9  # begin, table, set, elements, 2 x (chain, rule), end
    elements = msgs[3][3][nft.NFTA_SET_ELEM_LIST_ELEMENTS]
    for a in addresses:
        assert bytes(int(x) for x in a.split(".")) in elements
    for chain in (msgs[4][3], msgs[6][3]):
        assert struct.unpack(">I", chain[nft.NFTA_CHAIN_POLICY]) == (nft.NF_ACCEPT,)


#: sha256 of the flaky and one-way (receiving side) batches as the Docker run of
#: tests/docker/test_partial_networks.py proved them on a real kernel:
#: peer_batch("dcfire_abc123_p1", 200, [], PeerRule(("in", "out"), 30, True)) and
#: peer_batch("dcfire_abc123_p1", 200, ["10.0.0.2"], PeerRule(("in",), 100, False))
FLAKY_SHA = "c2acb095216d79cb10f223cf888bacaf54f7cfa71dd5a511f2e50bab59ff59e7"
ONE_WAY_SHA = "ece929de026d0f22eb6c418fba173e7f00d452210acb774656e4a889e0433d8f"


def list_items(data: bytes) -> list[bytes]:
    """The payloads of a nested list's elements, in order (attributes() keeps the last)."""
    out, at = [], 0
    while at + netlink.NLATTR.size <= len(data):
        alen, _ = netlink.NLATTR.unpack_from(data, at)
        out.append(data[at + netlink.NLATTR.size : at + alen])
        at += netlink.align(alen)
    return out


def expressions(rule: dict[int, bytes]) -> list[tuple[str, dict[int, bytes]]]:
    """(name, data attributes) of each expression of a NEWRULE message, in order."""
    out = []
    for item in list_items(rule[nft.NFTA_RULE_EXPRESSIONS]):
        e = netlink.attributes(item, 0, len(item))
        name = e[nft.NFTA_EXPR_NAME].rstrip(b"\0").decode()
        data = e.get(nft.NFTA_EXPR_DATA | netlink.NLA_F_NESTED, b"")
        out.append((name, netlink.attributes(data, 0, len(data))))
    return out


def u32_of(value: bytes) -> int:
    return int(struct.unpack(">I", value)[0])


def test_new_rule_shapes_are_unchanged() -> None:
    flaky = nft.PeerRule(("in", "out"), 30, True)
    batch, acks = nft.peer_batch("dcfire_abc123_p1", 200, [], flaky)
    assert hashlib.sha256(batch).hexdigest() == FLAKY_SHA
    assert acks == 6
    one_way = nft.PeerRule(("in",), 100, False)
    batch, acks = nft.peer_batch("dcfire_abc123_p1", 200, ["10.0.0.2"], one_way)
    assert hashlib.sha256(batch).hexdigest() == ONE_WAY_SHA
    assert acks == 6  # no rule on the output chain
    assert nft.peer_batch("t", 1, ["10.0.0.2"], nft.PeerRule()) == nft.peer_batch(
        "t", 1, ["10.0.0.2"]
    )


def test_one_way_receiving_side_drops_only_on_input() -> None:
    msgs = decoded(nft.peer_batch("t", 1, ["10.0.0.2"], nft.PeerRule(("in",)))[0])
    t = nft.nft_type
    assert [m[0] for m in msgs] == [
        BEGIN,
        t(nft.NFT_MSG_NEWTABLE),
        t(nft.NFT_MSG_NEWSET),
        t(nft.NFT_MSG_NEWSETELEM),
        t(nft.NFT_MSG_NEWCHAIN),
        t(nft.NFT_MSG_NEWRULE),
        t(nft.NFT_MSG_NEWCHAIN),
        END,
    ]
    rule = msgs[5][3]
    assert rule[nft.NFTA_RULE_CHAIN] == b"in\0"
    exprs = expressions(rule)
    assert [n for n, _ in exprs] == ["meta", "cmp", "payload", "lookup", "immediate"]
    assert u32_of(exprs[2][1][nft.NFTA_PAYLOAD_OFFSET]) == nft.IPV4_SADDR_OFFSET
    # the sending side: a table with accept chains and no rule at all
    sender = decoded(nft.peer_batch("t", 1, ["10.0.0.3"], nft.PeerRule(()))[0])
    assert t(nft.NFT_MSG_NEWRULE) not in [m[0] for m in sender]


def test_flaky_rule_is_numgen_random_below_the_loss_except_loopback() -> None:
    msgs = decoded(nft.peer_batch("t", 1, [], nft.PeerRule(("in", "out"), 30, True))[0])
    rules = [m[3] for m in msgs if m[0] == nft.nft_type(nft.NFT_MSG_NEWRULE)]
    assert [r[nft.NFTA_RULE_CHAIN] for r in rules] == [b"in\0", b"out\0"]
    for rule, key in zip(rules, (nft.NFT_META_IIF, nft.NFT_META_OIF), strict=True):
        exprs = expressions(rule)
        names = [n for n, _ in exprs]
        assert names == ["meta", "cmp", "numgen", "byteorder", "cmp", "immediate"]
        assert u32_of(exprs[0][1][nft.NFTA_META_KEY]) == key
        assert u32_of(exprs[1][1][nft.NFTA_CMP_OP]) == nft.NFT_CMP_NEQ  # not loopback
        numgen = exprs[2][1]
        assert u32_of(numgen[nft.NFTA_NG_MODULUS]) == 100
        assert u32_of(numgen[nft.NFTA_NG_TYPE]) == nft.NFT_NG_RANDOM
        order = exprs[3][1]
        assert u32_of(order[nft.NFTA_BYTEORDER_OP]) == nft.NFT_BYTEORDER_HTON
        below = exprs[4][1]
        assert u32_of(below[nft.NFTA_CMP_OP]) == nft.NFT_CMP_LT
        data = below[nft.NFTA_CMP_DATA | netlink.NLA_F_NESTED]
        value = netlink.attributes(data, 0, len(data))[nft.NFTA_DATA_VALUE]
        assert value == struct.pack(">I", 30)  # big-endian, after hton: memcmp orders it
    # a partition with a loss: the set match, then the draw
    lossy = decoded(nft.peer_batch("t", 1, ["10.0.0.2"], nft.PeerRule(loss=50))[0])
    rule = next(m[3] for m in lossy if m[0] == nft.nft_type(nft.NFT_MSG_NEWRULE))
    assert [n for n, _ in expressions(rule)] == [
        "meta", "cmp", "payload", "lookup", "numgen", "byteorder", "cmp", "immediate"
    ]  # fmt: skip


def test_peer_rule_from_a_request_or_a_journal_entry() -> None:
    import pytest

    from pytest_dcfire.faults.agent.cuts import peer_rule
    from pytest_dcfire.faults.agent.dispatch import Refused

    assert peer_rule({}) == nft.PARTITION
    assert peer_rule({"drop": ["out", "in"]}) == nft.PARTITION  # kept in chain order
    assert peer_rule({"drop": []}) == nft.PeerRule(())
    assert peer_rule({"everyone": True, "loss": 20}) == nft.PeerRule(("in", "out"), 20, True)
    for bad in (
        {"drop": ["sideways"]},
        {"drop": "in"},
        {"loss": 0},
        {"loss": 101},
        {"loss": 0.5},
        {"loss": True},
        {"everyone": "yes"},
    ):
        with pytest.raises(Refused):
            peer_rule(bad)
