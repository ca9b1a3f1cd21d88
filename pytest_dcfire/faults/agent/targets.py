"""Targets: a container's process pinned with a pidfd and its netns, verified here (never
trusted from the request), and the switch that opens sockets inside a netns."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
from collections.abc import Iterator
from typing import Any

from .dispatch import Refused, Stale
from .kernel import enter_net, setns_net
from .netlink import NETLINK_NETFILTER

CONTAINER_ID_RE = re.compile(r"^[0-9a-f]{64}$")
#: Addresses one peer cut may block per target (one set, one netlink batch).
MAX_PEER_ADDRESSES = 1024


class Target:
    """A container's process pinned with a pidfd, and its netns fd, both verified.

    The pid is pinned with a pidfd, its /proc/<pid>/cgroup must name the container id, and
    the netns fd is opened while the pidfd proves the process is still that one, so a stale
    or forged pid can never redirect a cut to another process.
    """

    def __init__(self, cid: str, pid: int) -> None:
        if not CONTAINER_ID_RE.match(cid):
            raise Refused(f"{cid!r} is not a full container id")
        if pid <= 1 or pid == os.getpid():
            raise Refused(f"pid {pid} cannot be a service container's process")
        self.cid = cid
        self.pid = pid
        try:
            self.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise Stale(f"container {cid[:12]}: pid {pid} is gone (container stopped?)") from None
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cgroups = f.read()
            if cid not in cgroups:
                raise Stale(
                    f"pid {pid} does not belong to container {cid[:12]} "
                    "(restarted, or not a container of this engine)"
                )
            self.netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self.netns_ino = os.fstat(self.netns).st_ino
            # The pidfd is still alive, so cgroup and netns were read from that very process.
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            self.close()
            raise Stale(f"container {cid[:12]}: pid {pid} exited while being checked") from None
        except FileNotFoundError:
            self.close()
            raise Stale(f"container {cid[:12]}: pid {pid} is gone") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for name in ("netns", "pidfd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


def close_all(targets: list[Target]) -> None:
    for t in targets:
        t.close()


def parse_targets(raw: Any) -> list[Target]:
    """A request's `targets` as verified targets, all or none (closed on refusal)."""
    if not isinstance(raw, list) or not raw:
        raise Refused("no targets")
    targets: list[Target] = []
    try:
        for item in raw:
            targets.append(Target(str(item["id"]), int(item["pid"])))
    except BaseException:
        close_all(targets)
        raise
    if len({t.cid for t in targets}) != len(targets):
        close_all(targets)
        raise Refused("a target is named twice")
    return targets


def block_list(raw: Any) -> list[str]:
    """A peer cut's block list: IPv4 addresses, never loopback or 0.0.0.0 (that would cut
    the container off from itself or from everything)."""
    if not isinstance(raw, list) or len(raw) > MAX_PEER_ADDRESSES:
        raise Refused(f"block must be a list of at most {MAX_PEER_ADDRESSES} IPv4 addresses")
    out: set[str] = set()
    for item in raw:
        try:
            address = ipaddress.IPv4Address(str(item))
        except ValueError:
            raise Refused(f"{item!r} is not an IPv4 address") from None
        if address.is_loopback or address.is_unspecified:
            raise Refused(f"refusing to block {address}")
        out.add(str(address))
    return sorted(out, key=lambda a: ipaddress.IPv4Address(a))


class NetnsSwitch:
    """Open sockets inside another netns (setns back and forth on this thread): sockets
    stay bound to the netns they were made in."""

    def __init__(self) -> None:
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def inside(self, netns_fd: int) -> Iterator[None]:
        enter_net(netns_fd)
        try:
            yield
        finally:
            if setns_net(self.home) != 0:  # never continue in a foreign netns
                os.write(2, b"dcfire agent: cannot return to its own netns\n")
                os._exit(70)

    def netlink(self, netns_fd: int, protocol: int = NETLINK_NETFILTER) -> socket.socket:
        with self.inside(netns_fd):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        sock.bind((0, 0))
        return sock
