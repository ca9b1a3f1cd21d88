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
