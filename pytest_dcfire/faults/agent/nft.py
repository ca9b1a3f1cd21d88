"""nf_tables transactions as netlink batches: a site's cut, a peer cut, and their removal.

A peer cut's rule has a shape (`PeerRule`): which chains drop (both for a partition, input only
on the receiving side of a one-way partition), what share of the matching packets (`loss` < 100 adds
`numgen random mod 100 < loss`: a flaky network), and whether it matches the peer set or
every address but loopback (flaky targets lose packets to and from everyone).

Pure functions from names and addresses to bytes (unit-tested byte for byte); the agent
sends them. Numbers are named after <linux/netfilter/nf_tables.h> and
<linux/netfilter/nfnetlink.h>.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    message,
    nest,
    string,
    u32,
)

# <linux/netfilter/nfnetlink.h>, <linux/netfilter.h>
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFNL_SUBSYS_NFTABLES = 10
NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NF_DROP = 0
NF_ACCEPT = 1
NF_INET_LOCAL_IN = 1
NF_INET_LOCAL_OUT = 3

# message types
NFT_MSG_NEWTABLE = 0
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM = 12

# attributes, by object
NFTA_TABLE_NAME = 1
NFTA_TABLE_FLAGS = 2
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_CHAIN_HOOK = 4
NFTA_CHAIN_POLICY = 5
NFTA_CHAIN_TYPE = 7
NFTA_HOOK_HOOKNUM = 1
NFTA_HOOK_PRIORITY = 2
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_EXPRESSIONS = 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_META_DREG = 1
NFTA_META_KEY = 2
NFTA_CMP_SREG = 1
NFTA_CMP_OP = 2
NFTA_CMP_DATA = 3
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFTA_IMMEDIATE_DREG = 1
NFTA_IMMEDIATE_DATA = 2
NFTA_PAYLOAD_DREG = 1
NFTA_PAYLOAD_BASE = 2
NFTA_PAYLOAD_OFFSET = 3
NFTA_PAYLOAD_LEN = 4
NFTA_LOOKUP_SET = 1
NFTA_LOOKUP_SREG = 2
NFTA_LOOKUP_SET_ID = 4
NFTA_SET_TABLE = 1
NFTA_SET_NAME = 2
NFTA_SET_FLAGS = 3
NFTA_SET_KEY_TYPE = 4
NFTA_SET_KEY_LEN = 5
NFTA_SET_ID = 10
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_SET_ELEM_LIST_SET_ID = 4
NFTA_SET_ELEM_KEY = 1
NFTA_NG_DREG = 1
NFTA_NG_MODULUS = 2
NFTA_NG_TYPE = 3
NFTA_BYTEORDER_SREG = 1
NFTA_BYTEORDER_DREG = 2
NFTA_BYTEORDER_OP = 3
NFTA_BYTEORDER_LEN = 4
NFTA_BYTEORDER_SIZE = 5

# values
NFT_TABLE_F_OWNER = 0x2
NFT_REG_VERDICT = 0
NFT_REG_1 = 1
NFT_META_IIF = 4
NFT_META_OIF = 5
NFT_META_NFPROTO = 15
NFT_CMP_EQ = 0
NFT_CMP_NEQ = 1
NFT_CMP_LT = 2
NFT_NG_RANDOM = 1
NFT_BYTEORDER_HTON = 1
NFT_PAYLOAD_NETWORK_HEADER = 1
#: nftables' "ipv4_addr" data type (what `nft` gives a set of IPv4 addresses)
NFT_TYPE_IPADDR = 7
IPV4_SADDR_OFFSET = 12
IPV4_DADDR_OFFSET = 16
LOOPBACK_IFINDEX = 1
#: Before every other filter (iptables' filter table is at 0, conntrack at -200).
CHAIN_PRIORITY = -300
PEER_SET = "peers"
PEER_SET_ID = 1
#: (chain name, hook) of the two base chains of every table the agent makes.
CHAINS = (("in", NF_INET_LOCAL_IN), ("out", NF_INET_LOCAL_OUT))


def nft_type(msg: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg


def expr(name: str, *data: bytes) -> bytes:
    return nest(NFTA_LIST_ELEM, string(NFTA_EXPR_NAME, name), nest(NFTA_EXPR_DATA, *data))


def verdict(code: int) -> bytes:
    """`accept` or `drop` as an immediate into the verdict register."""
    data = nest(NFTA_IMMEDIATE_DATA, nest(NFTA_DATA_VERDICT, u32(NFTA_VERDICT_CODE, code)))
    return expr("immediate", u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT), data)


def compare(op: int, value: bytes) -> bytes:
    """`cmp <op> reg 1 value` (the kernel compares with memcmp: big-endian for < and >)."""
    return expr(
        "cmp",
        u32(NFTA_CMP_SREG, NFT_REG_1),
        u32(NFTA_CMP_OP, op),
        nest(NFTA_CMP_DATA, attr(NFTA_DATA_VALUE, value)),
    )


def meta_equals(key: int, value: bytes, op: int = NFT_CMP_EQ) -> bytes:
    """`meta <key> == value` (or `!=`): load the meta key into register 1, compare."""
    load = expr("meta", u32(NFTA_META_KEY, key), u32(NFTA_META_DREG, NFT_REG_1))
    return load + compare(op, value)


def random_below(percent: int) -> bytes:
    """`numgen random mod 100 < percent`, as `nft` compiles it: numgen writes a host-order
    u32, so it is turned big-endian (byteorder hton) before the memcmp-based `<`."""
    numgen = expr(
        "numgen",
        u32(NFTA_NG_DREG, NFT_REG_1),
        u32(NFTA_NG_MODULUS, 100),
        u32(NFTA_NG_TYPE, NFT_NG_RANDOM),
    )
    order = expr(
        "byteorder",
        u32(NFTA_BYTEORDER_SREG, NFT_REG_1),
        u32(NFTA_BYTEORDER_DREG, NFT_REG_1),
        u32(NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON),
        u32(NFTA_BYTEORDER_LEN, 4),
        u32(NFTA_BYTEORDER_SIZE, 4),
    )
    return numgen + order + compare(NFT_CMP_LT, struct.pack(">I", percent))


def accept_loopback(meta_key: int) -> bytes:
    """`meta iif|oif lo accept` as rule expressions."""
    matches = meta_equals(meta_key, struct.pack("=I", LOOPBACK_IFINDEX))
    return nest(NFTA_RULE_EXPRESSIONS, matches + verdict(NF_ACCEPT))


@dataclass(frozen=True)
class PeerRule:
    """The shape of a peer cut's rules: the default is a partition's (both chains drop
    every packet from or to the peer set)."""

    #: the chains that drop: "in" (packets from the peers) and/or "out" (packets to them)
    drop: tuple[str, ...] = ("in", "out")
    #: percent of the matching packets dropped (100: all; less: at random, each packet)
    loss: int = 100
    #: match every address but loopback, not the peer set (a flaky target)
    everyone: bool = False


#: A partition's rule: both chains drop every packet from or to the peer set.
PARTITION = PeerRule()


def drop_listed(offset: int, rule: PeerRule = PARTITION) -> bytes:
    """`meta nfproto ipv4 <saddr|daddr> @peers [numgen random mod 100 < loss] drop` as rule
    expressions; for `rule.everyone`, `meta iif|oif != lo [numgen ...] drop`."""
    if rule.everyone:
        key = NFT_META_IIF if offset == IPV4_SADDR_OFFSET else NFT_META_OIF
        match = meta_equals(key, struct.pack("=I", LOOPBACK_IFINDEX), NFT_CMP_NEQ)
    else:
        is_ipv4 = meta_equals(NFT_META_NFPROTO, bytes([NFPROTO_IPV4]))
        load = expr(
            "payload",
            u32(NFTA_PAYLOAD_DREG, NFT_REG_1),
            u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
            u32(NFTA_PAYLOAD_OFFSET, offset),
            u32(NFTA_PAYLOAD_LEN, 4),
        )
        listed = expr(
            "lookup",
            string(NFTA_LOOKUP_SET, PEER_SET),
            u32(NFTA_LOOKUP_SREG, NFT_REG_1),
            u32(NFTA_LOOKUP_SET_ID, PEER_SET_ID),
        )
        match = is_ipv4 + load + listed
    if rule.loss < 100:
        match += random_below(rule.loss)
    return nest(NFTA_RULE_EXPRESSIONS, match + verdict(NF_DROP))


def batch(seq: int, messages: list[bytes]) -> bytes:
    """Begin, the messages, end: the kernel applies all of them or none."""
    begin = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, b"", NFNL_SUBSYS_NFTABLES)
    end_seq = seq + len(messages) + 1
    end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq, 0, b"", NFNL_SUBSYS_NFTABLES)
    return begin + b"".join(messages) + end


def transaction(seq: int, steps: list[tuple[int, int, bytes]]) -> tuple[bytes, int]:
    """(message type, flags, attributes) each acked, numbered after `seq`; returns the batch
    and the number of acks to read."""
    out = [
        message(nft_type(kind), NLM_F_REQUEST | NLM_F_ACK | flags, seq + 1 + i, NFPROTO_INET, body)
        for i, (kind, flags, body) in enumerate(steps)
    ]
    return batch(seq, out), len(out)


def new_table(table: str) -> tuple[int, int, bytes]:
    """An owned table: the kernel removes it when the socket that made it closes."""
    body = string(NFTA_TABLE_NAME, table) + u32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER)
    return NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, body


def new_chain(table: str, chain: str, hook: int, policy: int) -> tuple[int, int, bytes]:
    """A filter base chain at CHAIN_PRIORITY with `policy` (NF_DROP or NF_ACCEPT)."""
    hook_attr = nest(
        NFTA_CHAIN_HOOK, u32(NFTA_HOOK_HOOKNUM, hook), u32(NFTA_HOOK_PRIORITY, CHAIN_PRIORITY)
    )
    body = (
        string(NFTA_CHAIN_TABLE, table)
        + string(NFTA_CHAIN_NAME, chain)
        + hook_attr
        + u32(NFTA_CHAIN_POLICY, policy)
        + string(NFTA_CHAIN_TYPE, "filter")
    )
    return NFT_MSG_NEWCHAIN, NLM_F_CREATE, body


def new_rule(table: str, chain: str, expressions: bytes) -> tuple[int, int, bytes]:
    body = string(NFTA_RULE_TABLE, table) + string(NFTA_RULE_CHAIN, chain) + expressions
    return NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, body


def cut_batch(table: str, seq: int) -> tuple[bytes, int]:
    """One atomic transaction: the table, two drop-policy base chains, loopback accepted."""
    steps = [new_table(table)]
    for (chain, hook), key in zip(CHAINS, (NFT_META_IIF, NFT_META_OIF), strict=True):
        steps.append(new_chain(table, chain, hook, NF_DROP))
        steps.append(new_rule(table, chain, accept_loopback(key)))
    return transaction(seq, steps)


def peer_batch(
    table: str, seq: int, addresses: list[str], rule: PeerRule = PARTITION
) -> tuple[bytes, int]:
    """One atomic transaction: an owned table with a hash set of `addresses` and two
    accept-policy base chains, each with one rule that drops what comes from (input) or
    goes to (output) an address in the set: seven messages whatever the number of peers.
    `rule` may leave a chain without its rule (one-way), drop a share (flaky) or match
    every address (flaky target)."""
    steps = [new_table(table)]
    peer_set = (
        string(NFTA_SET_TABLE, table)
        + string(NFTA_SET_NAME, PEER_SET)
        + u32(NFTA_SET_FLAGS, 0)  # a plain hash set
        + u32(NFTA_SET_KEY_TYPE, NFT_TYPE_IPADDR)
        + u32(NFTA_SET_KEY_LEN, 4)
        + u32(NFTA_SET_ID, PEER_SET_ID)  # referenced by the rules of this batch
    )
    steps.append((NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL, peer_set))
    if addresses:
        elements = b"".join(
            nest(
                NFTA_LIST_ELEM, nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, socket.inet_aton(a)))
            )
            for a in addresses
        )
        body = (
            string(NFTA_SET_ELEM_LIST_TABLE, table)
            + string(NFTA_SET_ELEM_LIST_SET, PEER_SET)
            + nest(NFTA_SET_ELEM_LIST_ELEMENTS, elements)
            + u32(NFTA_SET_ELEM_LIST_SET_ID, PEER_SET_ID)
        )
        steps.append((NFT_MSG_NEWSETELEM, NLM_F_CREATE, body))
    for (chain, hook), offset in zip(CHAINS, (IPV4_SADDR_OFFSET, IPV4_DADDR_OFFSET), strict=True):
        steps.append(new_chain(table, chain, hook, NF_ACCEPT))
        if chain in rule.drop:
            steps.append(new_rule(table, chain, drop_listed(offset, rule)))
    return transaction(seq, steps)


def delete_batch(table: str, seq: int) -> tuple[bytes, int]:
    """Remove `table` and everything in it."""
    return transaction(seq, [(NFT_MSG_DELTABLE, 0, string(NFTA_TABLE_NAME, table))])
