"""The agent's netlink reader on crafted replies: acks, errors, several messages in one
datagram, and the address dump (a socketpair stands in for the kernel)."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from pytest_dcfire.faults.agent import netlink


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the agent's end, the kernel's end)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield a, b
    a.close()
    b.close()


def header(mtype: int, body: bytes, seq: int = 1, flags: int = 0) -> bytes:
    return netlink.NLMSGHDR.pack(netlink.NLMSGHDR.size + len(body), mtype, flags, seq, 0) + body


def error(code: int, seq: int = 1) -> bytes:
    """NLMSG_ERROR: -errno (0 for an ack), then the header of the request it answers."""
    return header(netlink.NLMSG_ERROR, struct.pack("=i", -code) + header(0, b"", seq), seq)


def newaddr(address: str, kind: int = netlink.IFA_LOCAL, index: int = 5) -> bytes:
    ifa = netlink.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, index)
    body = ifa + netlink.attr(kind, socket.inet_aton(address)) + netlink.string(3, "eth0")
    return header(netlink.RTM_NEWADDR, body)


def test_acks_in_one_or_several_datagrams(pair: tuple[socket.socket, socket.socket]) -> None:
    agent, kernel = pair
    kernel.send(error(0) + error(0))
    kernel.send(error(0))
    netlink.acks(agent, 3, timeout=1.0)


def test_an_error_raises_the_kernels_errno(pair: tuple[socket.socket, socket.socket]) -> None:
    agent, kernel = pair
    kernel.send(error(0) + error(errno.EOPNOTSUPP) + error(0))
    with pytest.raises(OSError) as caught:
        netlink.acks(agent, 3, timeout=1.0)
    assert caught.value.errno == errno.EOPNOTSUPP


def test_silence_is_a_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    agent, kernel = pair
    kernel.send(error(0))
    with pytest.raises(OSError) as caught:
        netlink.acks(agent, 2, timeout=0.05)
    assert caught.value.errno == errno.ETIMEDOUT


def test_address_dump_skips_loopback_and_reads_either_attribute(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    agent, kernel = pair
    kernel.send(newaddr("127.0.0.1", index=1) + newaddr("172.18.0.2"))
    kernel.send(newaddr("10.5.0.9", kind=netlink.IFA_ADDRESS) + header(netlink.NLMSG_DONE, b""))
    assert netlink.ipv4_addresses(agent, 42, timeout=1.0) == ["172.18.0.2", "10.5.0.9"]
    request = kernel.recv(100)
    _, mtype, flags, seq, _ = netlink.NLMSGHDR.unpack_from(request)
    assert (mtype, seq) == (netlink.RTM_GETADDR, 42)
    assert flags == netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert request[netlink.NLMSGHDR.size] == socket.AF_INET


def test_address_dump_error(pair: tuple[socket.socket, socket.socket]) -> None:
    agent, kernel = pair
    kernel.send(error(errno.EPERM))
    with pytest.raises(OSError) as caught:
        netlink.ipv4_addresses(agent, 1, timeout=1.0)
    assert caught.value.errno == errno.EPERM


def test_attributes_stop_at_a_broken_length() -> None:
    data = netlink.u32(1, 7) + struct.pack("=HH", 2, 9) + netlink.u32(3, 8)
    assert netlink.attributes(data, 0, len(data)) == {1: struct.pack(">I", 7)}
