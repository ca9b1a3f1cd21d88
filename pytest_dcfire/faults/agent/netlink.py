"""Netlink for the agent: message and attribute encoding, the reader of acks and errors, and
the one dump it needs (a netns's IPv4 addresses). Numbers are named after the kernel's
<linux/netlink.h>, <linux/rtnetlink.h> and <linux/if_addr.h>."""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator

# <linux/netlink.h>
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLA_F_NESTED = 0x8000
#: struct nlmsghdr: length, type, flags, seq, port id
NLMSGHDR = struct.Struct("=IHHII")
#: struct nlattr: length, type
NLATTR = struct.Struct("=HH")
#: struct nfgenmsg: family, version, resource id (big endian)
NFGENMSG = struct.Struct("=BBH")
#: struct ifaddrmsg: family, prefix length, flags, scope, interface index
IFADDRMSG = struct.Struct("=BBBBI")

# <linux/rtnetlink.h>, <linux/if_addr.h>
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFA_ADDRESS = 1
IFA_LOCAL = 2


def align(length: int) -> int:
    """NLMSG_ALIGN / NLA_ALIGN: netlink pads everything to 4 bytes."""
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    length = NLATTR.size + len(payload)
    return NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def string(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    """A big-endian u32 attribute (nf_tables' NLA_BE32)."""
    return attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def message(mtype: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    """An nfnetlink message: nlmsghdr, nfgenmsg, then the attributes in `body`."""
    payload = NFGENMSG.pack(family, 0, socket.htons(res_id)) + body
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), mtype, flags, seq, 0) + payload


def attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """The attributes between `start` and `end` of `data`, by type (the last one wins)."""
    found: dict[int, bytes] = {}
    at = start
    while at + NLATTR.size <= end:
        alen, kind = NLATTR.unpack_from(data, at)
        if alen < NLATTR.size:
            break
        found[kind] = data[at + NLATTR.size : at + alen]
        at += align(alen)
    return found


def split(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Each message of one datagram as (type, offset, length)."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, mtype = struct.unpack_from("=IH", data, offset)
        yield mtype, offset, length
        offset += max(NLMSGHDR.size, align(length))


def error_code(data: bytes, offset: int) -> int:
    """The errno of an NLMSG_ERROR message (0 for an ack)."""
    (code,) = struct.unpack_from("=i", data, offset + NLMSGHDR.size)
    return -int(code)


def messages(
    sock: socket.socket, timeout: float, what: str
) -> Iterator[tuple[int, bytes, int, int]]:
    """Each netlink message read from `sock` as (type, datagram, offset, length); raise
    ETIMEDOUT when nothing comes for `timeout` seconds. The caller stops the iteration."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise OSError(errno.ETIMEDOUT, f"no answer {what}")
        data = sock.recv(65536)
        for mtype, offset, length in split(data):
            yield mtype, data, offset, length


def acks(sock: socket.socket, expected: int, timeout: float = 2.0) -> None:
    """Read `expected` acks; raise OSError with the kernel's errno on the first error."""
    seen = 0
    if expected <= 0:
        return
    for mtype, data, offset, _ in messages(sock, timeout, "from nf_tables"):
        if mtype == NLMSG_ERROR:
            code = error_code(data, offset)
            if code != 0:
                raise OSError(code, os.strerror(code))
            seen += 1
            if seen >= expected:
                return


def getaddr_request(seq: int) -> bytes:
    """RTM_GETADDR dump of every IPv4 address."""
    body = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETADDR, flags, seq, 0) + body


def ipv4_addresses(sock: socket.socket, seq: int, timeout: float = 2.0) -> list[str]:
    """Every IPv4 address of the netns `sock` (NETLINK_ROUTE) was opened in, loopback
    excluded: one RTM_GETADDR dump."""
    sock.sendall(getaddr_request(seq))
    found: list[str] = []
    for mtype, data, offset, length in messages(sock, timeout, "to RTM_GETADDR"):
        if mtype == NLMSG_DONE:
            return found
        if mtype == NLMSG_ERROR:
            code = error_code(data, offset)
            raise OSError(code, os.strerror(code))
        if mtype == RTM_NEWADDR:
            start = offset + NLMSGHDR.size + IFADDRMSG.size
            attrs = attributes(data, start, offset + length)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and len(raw) == 4 and raw[0] != 127:
                found.append(socket.inet_ntoa(raw))
    return found  # unreachable: messages() ends only by raising


class Sequence:
    """Netlink sequence numbers, one counter for every socket of the agent."""

    def __init__(self) -> None:
        self.value = int(time.time()) & 0xFFFFFF

    def take(self, n: int) -> int:
        """The first of `n` numbers (a batch uses its begin, `n` messages and its end)."""
        seq = self.value
        self.value = (self.value + n + 2) & 0x7FFFFFFF
        return seq
