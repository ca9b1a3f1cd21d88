"""The fault agent: the one long-lived process inside the session's helper container.

It runs as `python3 /dcfire/agent.py SESSION` through a single `docker exec` whose stdin and
stdout are the control channel, so a fire costs one round trip instead of one exec (~45 ms)
per container. Standard library only (Debian bookworm's Python 3.11); the helper image adds
e2fsprogs (mkfs.ext4), util-linux (nsenter) and iptables (the fallback cut).

Protocol: one JSON object per line. Request `{"id": N, "op": NAME, ...}`, reply
`{"id": N, "ok": true, "result": {...}}` or `{"id": N, "ok": false, "kind": "refused" |
"failed", "error": TEXT}`. The first line the agent writes is `{"ready": true, ...}`.
Times are `time.monotonic()` milliseconds of the agent; the client turns them into offsets
from its own request (the two clocks are never compared directly).

Why it is shaped this way:

- **Network cut = one nftables table per target netns**, written with raw netlink from this
  process: `setns()` into the target's netns just long enough to open a NETLINK_NETFILTER
  socket there (sockets stay bound to the netns they were made in), then one atomic batch
  per netns: table `inet dcfire_<session>` with input and output base chains (priority -300,
  policy drop) whose only rule accepts loopback. The kernel applies a batch synchronously
  inside `send()`, so "cut in place" is when `send()` returns; ten netns take well under a
  millisecond, with no process started. The table carries NFT_TABLE_F_OWNER: it belongs to
  the socket, so if this agent dies by any means (helper killed, OOM) the kernel drops the
  cut by itself and no rule can ever leak into a container (adopted ones included).
  Kernels without nf_tables (or the owner flag) fall back to `iptables-restore --noflush`
  run through `nsenter` on a pinned netns fd, journalled and undone explicitly.
- **Peer cut = one more owned table per target netns** (`inet dcfire_<session>_<name>`, a
  partition's direct traffic): a hash set of the other side's IPv4 addresses and
  accept-policy input/output chains with one rule each (`ip saddr @peers drop` on input,
  `ip daddr @peers drop` on output), so its cost does not grow with the number of peers.
  Its own name, so it sits beside a fire's table in the same netns and each is removed on
  its own. Journalled under "peers", re-applied by a restarted agent, undone by the
  dead-man switch; the iptables fallback is a DCFP<name>-<session> chain of DROP rules.
- **Targets are verified here too**: a target is (container id, pid). The pid is pinned with
  a pidfd, its /proc/<pid>/cgroup must name the container id, and the netns fd is opened
  while the pidfd proves the process is still that one. Anything else is refused, so a
  stale or forged pid can never redirect a cut to another process.
- **Storage pools** are sparse image files on the session's state volume
  (/dcfire/<session>/pools), formatted with mkfs.ext4 (lazy init), attached to a loop device
  found with LOOP_CTL_GET_FREE (the node is made with mknod when the helper's /dev lacks
  it) and mounted at /dcfire/mnt/<pool> inside the helper. That mount keeps the superblock
  alive whatever the engine mounts or unmounts, and it is where FIFREEZE/FITHAW are issued.
  Only mounts of loop devices that this agent created are ever frozen. Loop devices are
  attached without autoclear (a killed helper must not lose them mid-session) and detached
  with LOOP_CLR_FD on destroy or reap, which the kernel defers until the last mount is gone.
  Each loop device's lo_file_name is tagged `dcfire:<session>:<pool>` so that a reaper can
  find a dead session's devices without its journal. `pool_attach` mounts another session's
  pool here (an xdist worker acting on the shared copy) only if its device carries exactly
  that session's tag; such a pool is frozen and thawed here, never detached or deleted.
- **Journal** (/dcfire/<session>/journal.json on the state volume, replaced atomically) lists
  pools, which are frozen, cuts and peer cuts. Every fault is journalled before it is
  applied. A restarted agent (new helper container, same volume) adopts it, so restore
  never depends on memory alone.
- **Dead-man switch**: when stdin closes (the client died, even by SIGKILL: the engine
  closes the exec's stdin when the attach connection drops) or on SIGTERM, the agent undoes
  every cut and thaws every frozen pool before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import json
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

PROTOCOL = 1
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,95}$")
SESSION_RE = re.compile(r"^[a-z0-9]{1,32}$")
CONTAINER_ID_RE = re.compile(r"^[0-9a-f]{64}$")
#: What a kernel without nf_tables answers: fall back to iptables (unless nftables was asked).
NO_NFTABLES = (
    errno.EPROTONOSUPPORT,
    errno.EAFNOSUPPORT,
    errno.EOPNOTSUPP,
    errno.ENOENT,
    errno.EINVAL,
)
ROOT = "/dcfire"
MNT_ROOT = f"{ROOT}/mnt"

# -- Linux constants ----------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LOOP_MAJOR = 7
LO_FLAGS_AUTOCLEAR = 4
LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32s2Q")
MNT_DETACH = 2

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFA_ADDRESS = 1
IFA_LOCAL = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLA_F_NESTED = 0x8000
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWTABLE = 0
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM = 12
NFT_TYPE_IPADDR = 7
NFPROTO_INET = 1
NF_INET_LOCAL_IN = 1
NF_INET_LOCAL_OUT = 3
NF_DROP = 0
NF_ACCEPT = 1
NFT_TABLE_F_OWNER = 0x2
NFT_REG_VERDICT = 0
NFT_REG_1 = 1
NFT_META_IIF = 4
NFT_META_OIF = 5
NFT_CMP_EQ = 0
NFT_META_NFPROTO = 15
NFPROTO_IPV4 = 2
NFT_PAYLOAD_NETWORK_HEADER = 1
IPV4_SADDR_OFFSET = 12
IPV4_DADDR_OFFSET = 16
#: A peer cut's name (the client numbers them): part of its nftables table and iptables chain.
PEER_RE = re.compile(r"^[a-z0-9]{1,10}$")
#: Addresses one peer cut may block per target (one set, one netlink batch).
MAX_PEER_ADDRESSES = 1024
PEER_SET = "peers"
PEER_SET_ID = 1
LOOPBACK_IFINDEX = 1
CHAIN_PRIORITY = -300


class Refused(Exception):
    """The request names something this agent must not touch."""


class Stale(Refused):
    """A target's pid is gone or belongs to another process: the client should inspect the
    container again (it was restarted) and retry."""


class Failed(Exception):
    """The request was valid but the kernel or a tool said no."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def now_ms() -> float:
    return time.monotonic() * 1000.0


# -- nftables over raw netlink ------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def _msg(mtype: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


def _nft(msg: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg


def _expr(name: str, *data: bytes) -> bytes:
    return _nest(1, _str(1, name), _nest(2, *data))  # NFTA_LIST_ELEM{NAME, DATA}


def _accept_loopback(meta_key: int) -> bytes:
    meta = _expr("meta", _u32(2, meta_key), _u32(1, NFT_REG_1))  # KEY, DREG
    cmp = _expr(
        "cmp",
        _u32(1, NFT_REG_1),  # SREG
        _u32(2, NFT_CMP_EQ),  # OP
        _nest(3, _attr(1, struct.pack("=I", LOOPBACK_IFINDEX))),  # DATA{VALUE}
    )
    verdict = _nest(2, _nest(2, _u32(1, NF_ACCEPT)))  # IMMEDIATE_DATA{VERDICT{CODE}}
    accept = _expr("immediate", _u32(1, NFT_REG_VERDICT), verdict)
    return _nest(4, meta, cmp, accept)  # NFTA_RULE_EXPRESSIONS


def _batch(seq: int, messages: list[bytes]) -> bytes:
    begin = _msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, b"", NFNL_SUBSYS_NFTABLES)
    end = _msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + len(messages) + 1, 0, b"", 10)
    return begin + b"".join(messages) + end


def nft_cut_batch(table: str, seq: int) -> tuple[bytes, int]:
    """One atomic transaction: the table, two drop-policy base chains, loopback accepted."""
    ack = NLM_F_REQUEST | NLM_F_ACK
    msgs = [
        _msg(
            _nft(NFT_MSG_NEWTABLE),
            ack | NLM_F_CREATE | NLM_F_EXCL,
            seq + 1,
            NFPROTO_INET,
            _str(1, table) + _u32(2, NFT_TABLE_F_OWNER),
        )
    ]
    for i, (chain, hook, key) in enumerate(
        (("in", NF_INET_LOCAL_IN, NFT_META_IIF), ("out", NF_INET_LOCAL_OUT, NFT_META_OIF))
    ):
        hook_attr = _nest(4, _u32(1, hook), _u32(2, CHAIN_PRIORITY))
        chain_body = (
            _str(1, table) + _str(3, chain) + hook_attr + _u32(5, NF_DROP) + _str(7, "filter")
        )
        msgs.append(
            _msg(
                _nft(NFT_MSG_NEWCHAIN),
                ack | NLM_F_CREATE,
                seq + 2 + 2 * i,
                NFPROTO_INET,
                chain_body,
            )
        )
        msgs.append(
            _msg(
                _nft(NFT_MSG_NEWRULE),
                ack | NLM_F_CREATE | NLM_F_APPEND,
                seq + 3 + 2 * i,
                NFPROTO_INET,
                _str(1, table) + _str(2, chain) + _accept_loopback(key),
            )
        )
    return _batch(seq, msgs), len(msgs)


def _drop_listed(offset: int) -> bytes:
    """`meta nfproto ipv4 <saddr|daddr> @peers drop` as rule expressions."""
    nfproto = _expr("meta", _u32(2, NFT_META_NFPROTO), _u32(1, NFT_REG_1))
    is_ipv4 = _expr(
        "cmp", _u32(1, NFT_REG_1), _u32(2, NFT_CMP_EQ), _nest(3, _attr(1, bytes([NFPROTO_IPV4])))
    )
    load = _expr(
        "payload",
        _u32(1, NFT_REG_1),  # DREG
        _u32(2, NFT_PAYLOAD_NETWORK_HEADER),  # BASE
        _u32(3, offset),  # OFFSET
        _u32(4, 4),  # LEN
    )
    listed = _expr("lookup", _str(1, PEER_SET), _u32(2, NFT_REG_1), _u32(4, PEER_SET_ID))
    verdict = _nest(2, _nest(2, _u32(1, NF_DROP)))
    drop = _expr("immediate", _u32(1, NFT_REG_VERDICT), verdict)
    return _nest(4, nfproto, is_ipv4, load, listed, drop)


def nft_peer_batch(table: str, seq: int, addresses: list[str]) -> tuple[bytes, int]:
    """One atomic transaction: an owned table with a hash set of `addresses` and two
    accept-policy base chains, each with one rule that drops what comes from (input) or
    goes to (output) an address in the set: seven messages whatever the number of peers."""
    ack = NLM_F_REQUEST | NLM_F_ACK
    msgs = [
        (
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL,
            _str(1, table) + _u32(2, NFT_TABLE_F_OWNER),
        ),
        (
            NFT_MSG_NEWSET,
            NLM_F_CREATE | NLM_F_EXCL,
            _str(1, table)  # TABLE
            + _str(2, PEER_SET)  # NAME
            + _u32(3, 0)  # FLAGS: a plain hash set
            + _u32(4, NFT_TYPE_IPADDR)  # KEY_TYPE
            + _u32(5, 4)  # KEY_LEN
            + _u32(10, PEER_SET_ID),  # ID (referenced by the rules of this batch)
        ),
    ]
    if addresses:
        elements = b"".join(
            _nest(1, _nest(1, _attr(1, socket.inet_aton(a))))  # LIST_ELEM{KEY{VALUE}}
            for a in addresses
        )
        msgs.append(
            (
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE,
                _str(1, table) + _str(2, PEER_SET) + _nest(3, elements) + _u32(4, PEER_SET_ID),
            )
        )
    for chain, hook, offset in (
        ("in", NF_INET_LOCAL_IN, IPV4_SADDR_OFFSET),
        ("out", NF_INET_LOCAL_OUT, IPV4_DADDR_OFFSET),
    ):
        hook_attr = _nest(4, _u32(1, hook), _u32(2, CHAIN_PRIORITY))
        body = _str(1, table) + _str(3, chain) + hook_attr + _u32(5, NF_ACCEPT) + _str(7, "filter")
        msgs.append((NFT_MSG_NEWCHAIN, NLM_F_CREATE, body))
        msgs.append(
            (
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                _str(1, table) + _str(2, chain) + _drop_listed(offset),
            )
        )
    out = [
        _msg(_nft(kind), ack | flags, seq + 1 + i, NFPROTO_INET, body)
        for i, (kind, flags, body) in enumerate(msgs)
    ]
    return _batch(seq, out), len(out)


def nft_delete_batch(table: str, seq: int) -> tuple[bytes, int]:
    body = _str(1, table)
    msg = _msg(_nft(NFT_MSG_DELTABLE), NLM_F_REQUEST | NLM_F_ACK, seq + 1, NFPROTO_INET, body)
    return _batch(seq, [msg]), 1


def _backend(request: dict[str, Any]) -> str:
    backend = str(request.get("backend", "auto"))
    if backend not in ("auto", "nftables", "iptables"):
        raise Refused(f"unknown backend {backend!r}")
    return backend


def nl_messages(
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
        offset = 0
        while offset + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, offset)
            yield mtype, data, offset, length
            offset += max(16, (length + 3) & ~3)


def _nl_error(data: bytes, offset: int) -> int:
    (code,) = struct.unpack_from("=i", data, offset + 16)
    return -int(code)


def nl_acks(sock: socket.socket, expected: int, timeout: float = 2.0) -> None:
    """Read `expected` acks; raise OSError with the kernel's errno on the first error."""
    seen = 0
    if expected <= 0:
        return
    for mtype, data, offset, _ in nl_messages(sock, timeout, "from nf_tables"):
        if mtype == NLMSG_ERROR:
            code = _nl_error(data, offset)
            if code != 0:
                raise OSError(code, os.strerror(code))
            seen += 1
            if seen >= expected:
                return


def ipv4_addresses(sock: socket.socket, seq: int, timeout: float = 2.0) -> list[str]:
    """Every IPv4 address of the netns `sock` (NETLINK_ROUTE) was opened in, loopback
    excluded: one RTM_GETADDR dump."""
    body = struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)  # ifaddrmsg
    sock.sendall(
        struct.pack("=IHHII", 16 + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        + body
    )
    found: list[str] = []
    for mtype, data, offset, length in nl_messages(sock, timeout, "to RTM_GETADDR"):
        if mtype == NLMSG_DONE:
            return found
        if mtype == NLMSG_ERROR:
            code = _nl_error(data, offset)
            raise OSError(code, os.strerror(code))
        if mtype == RTM_NEWADDR:
            attrs: dict[int, bytes] = {}
            at = offset + 16 + 8
            while at + 4 <= offset + length:
                alen, kind = struct.unpack_from("=HH", data, at)
                if alen < 4:
                    break
                attrs[kind] = data[at + 4 : at + alen]
                at += (alen + 3) & ~3
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and len(raw) == 4 and raw[0] != 127:
                found.append(socket.inet_ntoa(raw))
    return found  # unreachable: nl_messages ends only by raising


# -- targets ------------------------------------------------------------------------------


class Target:
    """A container's process pinned with a pidfd, and its netns fd, both verified."""

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


class NetnsSwitch:
    """Open sockets inside another netns (setns back and forth on this thread)."""

    def __init__(self) -> None:
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def inside(self, netns_fd: int) -> Iterator[None]:
        _check(_libc.setns(netns_fd, CLONE_NEWNET), "setns into target netns")
        try:
            yield
        finally:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:  # never continue in a foreign netns
                os.write(2, b"dcfire agent: cannot return to its own netns\n")
                os._exit(70)

    def netlink(self, netns_fd: int, protocol: int = NETLINK_NETFILTER) -> socket.socket:
        with self.inside(netns_fd):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        sock.bind((0, 0))
        return sock


class Cut:
    """One applied cut (or, with `block`, one peer cut), kept until it is undone."""

    def __init__(
        self,
        target: Target,
        method: str,
        sock: socket.socket | None,
        block: list[str] | None = None,
    ) -> None:
        self.target = target
        self.method = method
        self.sock = sock
        self.block = block

    def journal(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "pid": self.target.pid,
            "netns": self.target.netns_ino,
            "method": self.method,
        }
        if self.block is not None:
            entry["block"] = self.block
        return entry


# -- the agent ----------------------------------------------------------------------------


class Agent:
    def __init__(self, session: str, out: Any) -> None:
        if not SESSION_RE.match(session):
            raise SystemExit(f"bad session id {session!r}")
        self.session = session
        self.state = f"{ROOT}/{session}"
        self.journal_path = f"{self.state}/journal.json"
        self.table = f"dcfire_{session}"
        self.chain = f"DCFIRE-{session}"[:28]
        self.out = out
        self.out_lock = threading.Lock()
        self.ns = NetnsSwitch()
        self.seq = int(time.time()) & 0xFFFFFF
        self.cuts: dict[str, Cut] = {}
        #: Peer cuts (a partition's direct traffic): name -> container id -> its table.
        self.peers: dict[str, dict[str, Cut]] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.nft_ok: bool | None = None
        self.undone = False
        #: Sockets to close after the reply: a netlink close waits for an RCU grace period
        #: (~10 ms), which must not delay a restore.
        self.graveyard: list[socket.socket] = []
        os.makedirs(f"{self.state}/pools", exist_ok=True)
        os.makedirs(MNT_ROOT, exist_ok=True)
        self._take_lock()
        self.adopted = self._adopt()

    # -- journal ----------------------------------------------------------------------

    def _take_lock(self) -> None:
        """One agent per session: a leftover agent (its channel lost) is asked to hand over
        and exit without undoing, so two agents never fight over the same pools and the
        fire goes on."""
        self.lock_fd = os.open(f"{self.state}/agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + 10.0
        asked = False
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit("another agent of this session holds the lock") from None
                if not asked:
                    asked = True
                    self._stop_previous()
                time.sleep(0.02)
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, str(os.getpid()).encode(), 0)

    def _stop_previous(self) -> None:
        try:
            pid = int(os.pread(self.lock_fd, 32, 0).decode() or "0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (ValueError, OSError):
            return
        if any(a.endswith(b"agent.py") for a in argv) and self.session.encode() in argv:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)  # hand over: exit without undoing anything

    def _write_journal(self) -> None:
        data = {
            "protocol": PROTOCOL,
            "session": self.session,
            "pools": self.pools,
            "cuts": {cid: cut.journal() for cid, cut in self.cuts.items()},
            "peers": {
                name: {cid: cut.journal() for cid, cut in cuts.items()}
                for name, cuts in self.peers.items()
            },
        }
        tmp = f"{self.journal_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.journal_path)

    def _adopt(self) -> dict[str, Any]:
        """Take over the pools (and fallback cuts) a previous agent of this session left."""
        try:
            with open(self.journal_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            return {"pools": [], "lost": [], "cuts": []}
        lost: list[str] = []
        for name, pool in (old.get("pools") or {}).items():
            if not NAME_RE.match(name):
                continue
            try:
                self._remount(name, pool)
                # A previous agent that ended set autoclear: this session goes on.
                if not pool.get("attached"):
                    self._autoclear(int(pool["loop"]), pool["tag"], False)
                self.pools[name] = pool
            except (OSError, KeyError, TypeError, ValueError) as exc:
                lost.append(f"{name}: {exc}")  # e.g. a crash between image and attach
        cuts = self._adopt_cuts(old.get("cuts") or {})
        peers = self._adopt_peers(old.get("peers") or {})
        self._write_journal()
        return {"pools": sorted(self.pools), "lost": lost, "cuts": cuts, "peers": peers}

    def _adopt_cuts(self, journal: dict[str, Any]) -> list[str]:
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
                self._nft_cut(again)
            except OSError:
                for t in again:
                    t.close()
        return sorted(self.cuts)

    def _adopt_peers(self, journal: dict[str, Any]) -> list[str]:
        """Peer cuts go on across an agent restart too, on the same terms as cuts."""
        for name, cuts in journal.items():
            if not PEER_RE.match(str(name)) or not isinstance(cuts, dict):
                continue
            again: list[tuple[Target, list[str]]] = []
            kept: dict[str, Cut] = {}
            for cid, cut in cuts.items():
                try:
                    target = Target(str(cid), int(cut["pid"]))
                    block = _addresses(cut.get("block"))
                except (Refused, OSError, KeyError, ValueError, TypeError):
                    continue
                if target.netns_ino != cut.get("netns"):
                    target.close()
                elif cut.get("method") == "iptables":
                    kept[target.cid] = Cut(target, "iptables", None, block)
                else:
                    again.append((target, block))
            if again:
                try:
                    self._nft_peer_cut(str(name), again, kept)
                except OSError:
                    for t, _ in again:
                        t.close()
            if kept:
                self.peers[str(name)] = kept
        return sorted(self.peers)

    # -- dispatch ---------------------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self.out_lock:
            self.out.write(line)
            self.out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        op = str(request.get("op", ""))
        t_recv = now_ms()
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(self, f"op_{op}", None)
        try:
            if handler is None or not re.match(r"^[a-z_]+$", op):
                raise Refused(f"unknown operation {op!r}")
            result = handler(request)
            result.setdefault("t_recv", t_recv)
            result["t_reply"] = now_ms()
            self.send({"id": rid, "ok": True, "result": result})
        except Refused as exc:
            kind = "stale" if isinstance(exc, Stale) else "refused"
            self.send({"id": rid, "ok": False, "kind": kind, "error": str(exc)})
        except (Failed, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.send({"id": rid, "ok": False, "kind": "failed", "error": f"{op}: {exc}"})
        finally:
            self._bury()

    def _bury(self) -> None:
        if not self.graveyard:
            return
        dead, self.graveyard = self.graveyard, []
        for sock in dead:
            threading.Thread(target=sock.close, daemon=True).start()

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "session": self.session}

    def op_status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "cuts": {cid: cut.journal() for cid, cut in self.cuts.items()},
            "peers": {
                name: {cid: cut.journal() for cid, cut in cuts.items()}
                for name, cuts in self.peers.items()
            },
            "pools": self.pools,
            "loops": self.loops(),
        }

    # -- network ----------------------------------------------------------------------

    def _targets(self, request: dict[str, Any]) -> list[Target]:
        raw = request.get("targets")
        if not isinstance(raw, list) or not raw:
            raise Refused("no targets")
        targets: list[Target] = []
        try:
            for item in raw:
                targets.append(Target(str(item["id"]), int(item["pid"])))
        except BaseException:
            for t in targets:
                t.close()
            raise
        if len({t.cid for t in targets}) != len(targets):
            for t in targets:
                t.close()
            raise Refused("a target is named twice")
        return targets

    def op_cut(self, request: dict[str, Any]) -> dict[str, Any]:
        """Cut every target, all or nothing; report when each cut was in place."""
        backend = _backend(request)
        targets = self._targets(request)
        already = [t.cid[:12] for t in targets if t.cid in self.cuts]
        if already:
            for t in targets:
                t.close()
            raise Refused(f"already cut: {', '.join(already)}")
        t_prepared = now_ms()
        method, times = self._nft_or_ipt(
            backend, targets, lambda: self._nft_cut(targets), lambda: self._ipt_cut(targets)
        )
        return {"method": method, "cuts": times, "t_prepared": t_prepared}

    def _nft_or_ipt(
        self,
        backend: str,
        targets: list[Target],
        nft: Callable[[], dict[str, float]],
        ipt: Callable[[], dict[str, float]],
    ) -> tuple[str, dict[str, float]]:
        """nftables unless iptables was asked for or the kernel has no nf_tables (then
        iptables, unless nftables was demanded); the targets are closed if it fails."""
        if backend != "iptables" and self.nft_ok is not False:
            try:
                return "nftables", nft()
            except OSError as exc:
                if backend == "nftables" or exc.errno not in NO_NFTABLES:
                    for t in targets:
                        t.close()
                    raise
                self.nft_ok = False
        return "iptables", ipt()

    def _next_seq(self, n: int) -> int:
        seq = self.seq
        self.seq = (self.seq + n + 2) & 0x7FFFFFFF
        return seq

    def _nft_cut(self, targets: list[Target]) -> dict[str, float]:
        """Open a socket in every netns first, then send the batches back to back.

        Tables are always owned by their socket: a kernel without owned tables (< 5.12)
        answers EINVAL or EOPNOTSUPP and the caller falls back to journalled iptables, so
        an nftables cut can never outlive this agent.
        """
        times, socks = self._nft_apply(
            targets, self.table, lambda t: nft_cut_batch(self.table, self._next_seq(5))
        )
        for t, sock in zip(targets, socks, strict=True):
            self.cuts[t.cid] = Cut(t, "nftables", sock)
        self.nft_ok = True
        self._write_journal()  # after the cuts: they are in place before this costs time
        return times

    def _nft_apply(
        self,
        targets: list[Target],
        table: str,
        build: Callable[[Target], tuple[bytes, int]],
    ) -> tuple[dict[str, float], list[socket.socket]]:
        """Send `build(target)` into every target's netns; all or nothing. Returns when each
        batch was committed, and the sockets that now own the tables (one per target)."""
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
                    nl_acks(sock, n)
                except OSError as exc:
                    error = exc
                    break
        if error is not None:  # all or nothing: remove what did go in
            for _, sock, _ in sent:
                with contextlib.suppress(OSError):
                    sock.sendall(nft_delete_batch(table, self._next_seq(2))[0])
            self.graveyard.extend(socks)
            raise error
        return times, socks

    def _ipt(self, netns_fd: int, rules: str) -> None:
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

    def _ipt_rules(self, apply: bool, chain: str | None = None) -> str:
        c = chain or self.chain
        if apply:
            body = (
                f":{c} - [0:0]\n-A {c} -i lo -j ACCEPT\n-A {c} -o lo -j ACCEPT\n"
                f"-A {c} -j DROP\n-I INPUT 1 -j {c}\n-I OUTPUT 1 -j {c}\n"
            )
        else:
            body = f"-D INPUT -j {c}\n-D OUTPUT -j {c}\n-F {c}\n-X {c}\n"
        return f"*filter\n{body}COMMIT\n"

    def _ipt_cut(self, targets: list[Target]) -> dict[str, float]:
        for t in targets:  # journalled first: an interrupt must still be undone
            self.cuts[t.cid] = Cut(t, "iptables", None)
        self._write_journal()
        times: dict[str, float] = {}
        errors: list[str] = []
        rules = self._ipt_rules(apply=True)

        def one(t: Target) -> None:
            try:
                self._ipt(t.netns, rules)
                times[t.cid] = now_ms()
            except (Failed, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{t.cid[:12]}: {exc}")

        threads = [threading.Thread(target=one, args=(t,)) for t in targets]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            self._undo_cuts([t.cid for t in targets])
            raise Failed("; ".join(errors))
        return times

    def op_uncut(self, request: dict[str, Any]) -> dict[str, Any]:
        ids = request.get("ids")
        if ids is None:
            ids = list(self.cuts)
        unknown = [str(i)[:12] for i in ids if i not in self.cuts]
        done = self._undo_cuts([i for i in ids if i in self.cuts])
        return {"restored": done, "not_cut": unknown}

    def _undo_cuts(self, ids: list[str]) -> dict[str, float]:
        """Remove the cuts on `ids`; a target whose netns is gone needs nothing."""
        return self._undo(self.cuts, ids, self.table, self.chain)

    def _undo(
        self, cuts: dict[str, Cut], ids: list[str], table: str, chain: str
    ) -> dict[str, float]:
        """Remove the tables (or chains) `table`/`chain` of `cuts[id]` for `ids`, and forget
        them; raise Failed naming what could not be removed after trying every one."""
        times: dict[str, float] = {}
        pending: list[tuple[str, socket.socket, int]] = []
        errors: list[str] = []
        for cid in ids:
            cut = cuts[cid]
            if cut.method == "nftables" and cut.sock is not None:
                batch, n = nft_delete_batch(table, self._next_seq(2))
                try:
                    cut.sock.sendall(batch)
                    times[cid] = now_ms()
                    pending.append((cid, cut.sock, n))
                except OSError as exc:
                    errors.append(f"{cid[:12]}: {exc}")
        ipt = [cid for cid in ids if cuts[cid].method == "iptables"]
        if ipt:
            rules = self._ipt_rules(apply=False, chain=chain)

            def one(cid: str) -> None:
                try:
                    self._ipt(cuts[cid].target.netns, rules)
                except Failed as exc:
                    if "No chain" not in str(exc) and "does not exist" not in str(exc):
                        errors.append(f"{cid[:12]}: {exc}")
                times[cid] = now_ms()

            threads = [threading.Thread(target=one, args=(cid,)) for cid in ipt]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        for cid, sock, n in pending:
            try:
                nl_acks(sock, n)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: the table is already gone
                    errors.append(f"{cid[:12]}: {exc}")
        for cid in ids:
            cut = cuts.pop(cid)
            if cut.sock is not None:
                self.graveyard.append(cut.sock)
            cut.target.close()
        self._write_journal()
        if errors:
            raise Failed("; ".join(errors))
        return times

    def op_uncut_foreign(self, request: dict[str, Any]) -> dict[str, Any]:
        """Undo the iptables cuts (and iptables peer cuts named in `peers`) of a dead session
        (its journal, read by `op_reap`)."""
        session = str(request.get("session", self.session))
        if not SESSION_RE.match(session):
            raise Refused(f"bad session id {session!r}")
        peers = request.get("peers") or []
        if not isinstance(peers, list) or not all(PEER_RE.match(str(p)) for p in peers):
            raise Refused(f"bad peer cut names {peers!r}")
        chains = [f"DCFIRE-{session}"[:28]] + [self._peer_chain(str(p), session) for p in peers]
        undo = [self._ipt_rules(apply=False, chain=chain) for chain in chains]
        done: list[str] = []
        for t in self._targets(request):
            try:
                for rules in undo:
                    try:
                        self._ipt(t.netns, rules)
                        if t.cid not in done:
                            done.append(t.cid)
                    except Failed:
                        pass  # nothing there any more (a new netns after a restart)
            finally:
                t.close()
        return {"restored": done}

    # -- peer cuts: a partition's direct traffic ---------------------------------------

    def _peer_table(self, name: str) -> str:
        return f"{self.table}_{name}"

    def _peer_chain(self, name: str, session: str | None = None) -> str:
        return f"DCFP{name}-{session or self.session}"[:28]

    def op_peer_cut(self, request: dict[str, Any]) -> dict[str, Any]:
        """Split the targets of side 0 from those of side 1: in each target's netns, drop
        every packet from or to an address of the other side (dropped, never rejected:
        connections hang, new ones time out), all targets or none.

        The addresses are read here, from the targets' own netns (RTM_GETADDR: every IPv4
        address on every interface but loopback), at the moment of the cut. A target may
        instead carry an explicit `block` list. One table (or chain) per target named after
        this peer cut, beside a fire's, so each is undone on its own; journalled and undone
        by the dead-man switch like cuts."""
        name = str(request.get("name", ""))
        if not PEER_RE.match(name):
            raise Refused(f"bad peer cut name {name!r}")
        if name in self.peers:
            raise Refused(f"peer cut {name!r} exists")
        backend = _backend(request)
        raw = request.get("targets")
        if not isinstance(raw, list) or not raw or not all(isinstance(i, dict) for i in raw):
            raise Refused("no targets")
        sides = [item.get("side") for item in raw]
        explicit = [
            None if item.get("block") is None else _addresses(item["block"]) for item in raw
        ]
        if any(b is None and s not in (0, 1) for b, s in zip(explicit, sides, strict=True)):
            raise Refused("each target needs a side (0 or 1) or a block list")
        targets = self._targets(request)
        try:
            found = {t.cid: self._own_addresses(t) for t in targets}
        except OSError:
            for t in targets:
                t.close()
            raise
        pairs: list[tuple[Target, list[str]]] = []
        for t, side, block in zip(targets, sides, explicit, strict=True):
            if block is None:
                others = [
                    o for o, s in zip(targets, sides, strict=True) if s is not None and s != side
                ]
                block = _addresses([a for o in others for a in found[o.cid]])
            pairs.append((t, block))
        t_prepared = now_ms()

        def nft() -> dict[str, float]:
            done: dict[str, Cut] = {}
            times = self._nft_peer_cut(name, pairs, done)
            self.peers[name] = done
            self._write_journal()
            return times

        method, times = self._nft_or_ipt(
            backend, targets, nft, lambda: self._ipt_peer_cut(name, pairs)
        )
        return {"method": method, "cuts": times, "t_prepared": t_prepared, "addresses": found}

    def _own_addresses(self, target: Target) -> list[str]:
        sock = self.ns.netlink(target.netns, NETLINK_ROUTE)
        try:
            return ipv4_addresses(sock, self._next_seq(1))
        finally:
            self.graveyard.append(sock)  # closed after the reply (RCU grace period)

    def _nft_peer_cut(
        self, name: str, pairs: list[tuple[Target, list[str]]], into: dict[str, Cut]
    ) -> dict[str, float]:
        table = self._peer_table(name)
        blocks = {t.cid: block for t, block in pairs}

        def build(t: Target) -> tuple[bytes, int]:
            block = blocks[t.cid]
            return nft_peer_batch(table, self._next_seq(9), block)

        times, socks = self._nft_apply([t for t, _ in pairs], table, build)
        for (t, block), sock in zip(pairs, socks, strict=True):
            into[t.cid] = Cut(t, "nftables", sock, block)
        self.nft_ok = True
        return times

    def _ipt_peer_cut(self, name: str, pairs: list[tuple[Target, list[str]]]) -> dict[str, float]:
        self.peers[name] = {t.cid: Cut(t, "iptables", None, block) for t, block in pairs}
        self._write_journal()  # journalled first: an interrupt must still be undone
        try:
            return self._ipt_peer_apply(name, pairs)
        except Failed:
            with contextlib.suppress(Failed):
                self._undo_peer(name)
            raise

    def _ipt_peer_apply(self, name: str, pairs: list[tuple[Target, list[str]]]) -> dict[str, float]:
        chain = self._peer_chain(name)
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(t: Target, block: list[str]) -> None:
            lines = [f":{chain} - [0:0]"]
            lines += [f"-A {chain} -s {a}/32 -j DROP" for a in block]
            lines += [f"-A {chain} -d {a}/32 -j DROP" for a in block]
            lines += [f"-I INPUT 1 -j {chain}", f"-I OUTPUT 1 -j {chain}"]
            try:
                self._ipt(t.netns, "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
                times[t.cid] = now_ms()
            except (Failed, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{t.cid[:12]}: {exc}")

        threads = [threading.Thread(target=one, args=pair) for pair in pairs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise Failed("; ".join(errors))
        return times

    def op_peer_rejoin(self, request: dict[str, Any]) -> dict[str, Any]:
        """Cut restarted targets of a peer cut again: a container started again (power loss
        restored) has a new netns without its table. Targets whose netns is the one already
        cut are left as they are."""
        name = str(request.get("name", ""))
        cuts = self.peers.get(name)
        if not PEER_RE.match(name) or cuts is None:
            raise Refused(f"no peer cut {name!r}")
        targets = self._targets(request)
        fresh: list[tuple[Target, list[str]]] = []
        for t in targets:
            old = cuts.get(t.cid)
            if old is None or old.target.netns_ino == t.netns_ino:
                t.close()
                continue
            fresh.append((t, list(old.block or [])))
        if not fresh:
            return {"cuts": {}}
        method = cuts[fresh[0][0].cid].method
        if method == "nftables":
            into: dict[str, Cut] = {}
            times = self._nft_peer_cut(name, fresh, into)
        else:
            times = self._ipt_peer_apply(name, fresh)
            into = {t.cid: Cut(t, "iptables", None, block) for t, block in fresh}
        for cid, cut in into.items():
            old = cuts[cid]
            if old.sock is not None:
                self.graveyard.append(old.sock)
            old.target.close()
            cuts[cid] = cut
        self._write_journal()
        return {"method": method, "cuts": times}

    def _undo_peer(self, name: str) -> dict[str, float]:
        cuts = self.peers[name]
        try:
            return self._undo(cuts, list(cuts), self._peer_table(name), self._peer_chain(name))
        finally:
            if not cuts:
                del self.peers[name]
                self._write_journal()

    def op_peer_uncut(self, request: dict[str, Any]) -> dict[str, Any]:
        """Undo one peer cut everywhere (a name never cut, or already undone, is not an
        error: a helper that died took its owned tables with it)."""
        name = str(request.get("name", ""))
        if not PEER_RE.match(name):
            raise Refused(f"bad peer cut name {name!r}")
        if name not in self.peers:
            return {"restored": {}, "not_cut": [name]}
        return {"restored": self._undo_peer(name), "not_cut": []}

    # -- power ------------------------------------------------------------------------

    def op_kill(self, request: dict[str, Any]) -> dict[str, Any]:
        """SIGKILL each target's init at once: instant, and unlike the engine's kill it never
        waits for processes that are stuck on frozen storage."""
        targets = self._targets(request)
        times: dict[str, float] = {}
        try:
            for t in targets:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(t.pidfd, signal.SIGKILL)
                times[t.cid] = now_ms()
        finally:
            for t in targets:
                t.close()
        return {"method": "sigkill", "killed": times}

    # -- storage ----------------------------------------------------------------------

    def _pool(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(request.get("name", ""))
        if not NAME_RE.match(name) or ".." in name:
            raise Refused(f"bad pool name {name!r}")
        pool = self.pools.get(name)
        if pool is None:
            raise Refused(f"{name!r} is not a storage pool of session {self.session}")
        return name, pool

    def _names(self, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        names = request.get("names")
        if not isinstance(names, list):
            raise Refused("names must be a list")
        return [self._pool({"name": n}) for n in names]

    def _loop_node(self, number: int) -> str:
        path = f"/dev/loop{number}"
        with open(f"/sys/block/loop{number}/dev") as f:
            major, minor = (int(x) for x in f.read().strip().split(":"))
        try:
            st = os.stat(path)
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(major, minor):
                return path
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mknod(path, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
        return path

    def _attach(self, image: str, tag: str, number: int | None = None) -> int:
        """Attach `image` to a free loop device (or to `number`); return its number."""
        for _ in range(20):
            if number is None:
                ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
                try:
                    free = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                finally:
                    os.close(ctl)
            else:
                free = number
            node = self._loop_node(free)
            dev = os.open(node, os.O_RDWR | os.O_CLOEXEC)
            backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
            try:
                info = LOOP_INFO64.pack(
                    0, 0, 0, 0, 0, 0, 0, 0, 0, tag.encode()[:63], b"", b"", 0, 0
                )
                config = struct.pack("=II", backing, 0) + info + b"\0" * 64
                try:
                    fcntl.ioctl(dev, LOOP_CONFIGURE, config)
                except OSError as exc:
                    if exc.errno == errno.EBUSY and number is None:
                        continue  # someone else took it between GET_FREE and now
                    if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                        raise
                    fcntl.ioctl(dev, LOOP_SET_FD, backing)  # kernels before 5.8
                    fcntl.ioctl(dev, LOOP_SET_STATUS64, info)
                return int(free)
            finally:
                os.close(backing)
                os.close(dev)
        raise Failed("no free loop device after 20 tries")

    def loops(self, session: str | None = None) -> dict[str, dict[str, Any]]:
        """Attached loop devices tagged by dcfire (of `session`, or of any session)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            names = os.listdir("/sys/block")
        except OSError:
            return found
        for entry in names:
            if not entry.startswith("loop") or not entry[4:].isdigit():
                continue
            if not os.path.exists(f"/sys/block/{entry}/loop"):
                continue  # not attached
            number = int(entry[4:])
            try:
                fd = os.open(self._loop_node(number), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, b"\0" * LOOP_INFO64.size)
                finally:
                    os.close(fd)
            except OSError:
                continue
            tag = LOOP_INFO64.unpack(raw)[9].split(b"\0")[0].decode(errors="replace")
            parts = tag.split(":")
            if len(parts) != 3 or parts[0] != "dcfire":
                continue
            if session is not None and parts[1] != session:
                continue
            try:
                with open(f"/sys/block/{entry}/loop/backing_file") as f:
                    backing = f.read().strip()
            except OSError:
                backing = ""
            found[entry] = {"session": parts[1], "pool": parts[2], "backing": backing}
        return found

    def _mount(self, device: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        if os.path.ismount(target):
            return
        _check(_libc.mount(device.encode(), target.encode(), b"ext4", 0, b""), "mount")

    def _remount(self, name: str, pool: dict[str, Any]) -> None:
        """Mount an adopted pool here again (same superblock, frozen or not)."""
        mount = f"{MNT_ROOT}/{name}"
        if os.path.ismount(mount):
            return
        number = int(pool["loop"])
        if pool.get("attached"):  # another session's pool: never re-attached by us
            self._check_tag(number, pool["tag"])
            self._mount(self._loop_node(number), mount)
            return
        mine = self.loops(self.session).get(f"loop{number}")
        if mine is None or mine["pool"] != name[:40]:
            # Detached meanwhile (should not happen: no autoclear): take the same number back.
            self._attach(pool["image"], pool["tag"], number)
        self._mount(self._loop_node(number), mount)

    def op_pool_create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("name", ""))
        if not NAME_RE.match(name) or ".." in name:
            raise Refused(f"bad pool name {name!r}")
        if name in self.pools:
            raise Refused(f"pool {name!r} exists")
        size_mb = int(request.get("size_mb", 0))
        if not 16 <= size_mb <= 1 << 20:
            raise Refused(f"pool size {size_mb} MiB is outside 16..1048576")
        image = f"{self.state}/pools/{name}.img"
        tag = f"dcfire:{self.session}:{name[:40]}"
        fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size_mb << 20)
        finally:
            os.close(fd)
        pool: dict[str, Any] = {
            "image": image,
            "tag": tag,
            "loop": None,
            "frozen": False,
            "volume": str(request.get("volume", "")),
        }
        try:
            mkfs = subprocess.run(
                [
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-m",
                    "0",
                    "-E",
                    "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                    "-L",
                    name[:16],
                    image,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if mkfs.returncode != 0:
                raise Failed(f"mkfs.ext4: {mkfs.stderr.strip()[:300]}")
            number = self._attach(image, tag)
            pool["loop"] = number
            self.pools[name] = pool
            self._write_journal()
            mount = f"{MNT_ROOT}/{name}"
            self._mount(self._loop_node(number), mount)
            # An empty volume lets the engine copy the image's files (and ownership) in.
            with contextlib.suppress(OSError):
                os.rmdir(f"{mount}/lost+found")
        except BaseException:
            self._destroy(name, pool)
            raise
        with open(f"/sys/block/loop{number}/dev") as f:
            dev = f.read().strip()
        return {"loop": number, "device": f"/dev/loop{number}", "dev": dev}

    def _check_tag(self, number: int, tag: str) -> None:
        """Refuse a loop device that does not carry exactly `tag` (made by that pool's
        session), so an attach can never mount, or freeze, anything else."""
        fd = os.open(self._loop_node(number), os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, b"\0" * LOOP_INFO64.size)
        except OSError as exc:
            raise Refused(f"loop{number} is not attached ({exc})") from None
        finally:
            os.close(fd)
        found = LOOP_INFO64.unpack(raw)[9].split(b"\0")[0].decode(errors="replace")
        if found != tag[:63]:
            raise Refused(f"loop{number} is not pool {tag!r} (its tag is {found!r})")

    def op_pool_attach(self, request: dict[str, Any]) -> dict[str, Any]:
        """Mount another session's pool here, to freeze and thaw it (`dcfire_share =
        session`: a worker's agent acting on the shared copy). Its loop device must carry
        that session's tag for that pool; detaching and deleting stay with its owner."""
        name = str(request.get("name", ""))
        owner = str(request.get("session", ""))
        if not NAME_RE.match(name) or ".." in name:
            raise Refused(f"bad pool name {name!r}")
        if not SESSION_RE.match(owner):
            raise Refused(f"bad session {owner!r}")
        if name in self.pools:
            raise Refused(f"pool {name!r} exists")
        number = int(request.get("loop", -1))
        if number < 0:
            raise Refused("no loop device number")
        tag = f"dcfire:{owner}:{name[:40]}"
        self._check_tag(number, tag)
        pool: dict[str, Any] = {
            "image": None,
            "tag": tag,
            "loop": number,
            "frozen": False,
            "volume": str(request.get("volume", "")),
            "attached": owner,
        }
        self._mount(self._loop_node(number), f"{MNT_ROOT}/{name}")
        self.pools[name] = pool
        self._write_journal()
        return {"loop": number, "attached": name}

    def _freeze_one(self, name: str, pool: dict[str, Any], freeze: bool) -> float:
        mount = f"{MNT_ROOT}/{name}"
        fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if os.major(st.st_dev) != LOOP_MAJOR:
                raise Refused(f"{mount} is not a loop-backed pool; refusing to freeze it")
            if os.stat(f"{MNT_ROOT}").st_dev == st.st_dev:
                raise Refused(f"pool {name} is not mounted; refusing to freeze its parent")
            try:
                fcntl.ioctl(fd, FIFREEZE if freeze else FITHAW, 0)
            except OSError as exc:
                # EBUSY: already frozen; EINVAL: not frozen. Both are the wanted state.
                if exc.errno not in ((errno.EBUSY,) if freeze else (errno.EINVAL,)):
                    raise
            return now_ms()
        finally:
            os.close(fd)

    def _set_frozen(
        self, pools: list[tuple[str, dict[str, Any]]], freeze: bool
    ) -> dict[str, float]:
        if freeze:  # journalled before: an interrupt still thaws
            for _, pool in pools:
                pool["frozen"] = True
            self._write_journal()
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(name: str, pool: dict[str, Any]) -> None:
            try:
                times[name] = self._freeze_one(name, pool, freeze)
            except (OSError, Refused) as exc:
                errors.append(f"{name}: {exc}")

        if len(pools) == 1:
            one(*pools[0])
        else:  # each FIFREEZE syncs its filesystem first: do them side by side
            threads = [threading.Thread(target=one, args=p) for p in pools]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        if not freeze:
            for name, pool in pools:
                if name in times:
                    pool["frozen"] = False
            self._write_journal()
        if errors:
            raise Failed("; ".join(errors))
        return times

    def op_freeze(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"frozen": self._set_frozen(self._names(request), True)}

    def op_thaw(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"thawed": self._set_frozen(self._names(request), False)}

    def op_pool_destroy(self, request: dict[str, Any]) -> dict[str, Any]:
        name, pool = self._pool(request)
        self._destroy(name, pool)
        return {"destroyed": name}

    def _destroy(self, name: str, pool: dict[str, Any]) -> None:
        mount = f"{MNT_ROOT}/{name}"
        if os.path.ismount(mount):
            if pool.get("frozen"):
                self._freeze_one(name, pool, False)
            if _libc.umount2(mount.encode(), 0) != 0:
                _libc.umount2(mount.encode(), MNT_DETACH)
        with contextlib.suppress(OSError):
            os.rmdir(mount)
        if pool.get("attached"):  # another session's pool: only our mount was ours
            self.pools.pop(name, None)
            self._write_journal()
            return
        if pool.get("loop") is not None:
            self._detach(int(pool["loop"]), pool["tag"])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pool["image"])
        self.pools.pop(name, None)
        self._write_journal()

    def _detach(self, number: int, tag: str) -> None:
        """LOOP_CLR_FD; the kernel defers it (autoclear) while the engine still mounts it."""
        try:
            fd = os.open(self._loop_node(number), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, b"\0" * LOOP_INFO64.size)
            if LOOP_INFO64.unpack(raw)[9].split(b"\0")[0].decode(errors="replace") != tag[:63]:
                return  # not ours any more
            fcntl.ioctl(fd, LOOP_CLR_FD, 0)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: already detached
                raise
        finally:
            os.close(fd)

    def _autoclear(self, number: int, tag: str, on: bool) -> None:
        """Set or clear "detach on last close" (LOOP_CLR_FD sets it while mounted)."""
        fd = os.open(self._loop_node(number), os.O_RDONLY | os.O_CLOEXEC)
        try:
            info = list(LOOP_INFO64.unpack(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(232))))
            if info[9].split(b"\0")[0].decode(errors="replace") != tag[:63]:
                return
            flags = info[8] | LO_FLAGS_AUTOCLEAR if on else info[8] & ~LO_FLAGS_AUTOCLEAR
            if flags != info[8]:
                info[8] = flags
                fcntl.ioctl(fd, LOOP_SET_STATUS64, LOOP_INFO64.pack(*info))
        finally:
            os.close(fd)

    # -- reaping a dead session -------------------------------------------------------

    def op_reap(self, request: dict[str, Any]) -> dict[str, Any]:
        """Thaw and detach every pool of a dead session, found by the loop devices' tags.

        A pool is thawed through a fresh mount here: mounting a device that is mounted
        elsewhere (or whose last mount went while frozen) returns the same superblock, so
        FITHAW reaches it whoever else holds it. Then LOOP_CLR_FD: the device goes as soon
        as the engine and the dead helper have let go of it.
        """
        session = str(request.get("session", ""))
        if not SESSION_RE.match(session) or session == self.session:
            raise Refused(f"cannot reap session {session!r}")
        result: dict[str, Any] = {"thawed": [], "detached": [], "errors": [], "journal": None}
        journal = self._dead_journal(session, request)
        if journal is not None:
            result["journal"] = {
                "cuts": {
                    cid: cut
                    for cid, cut in (journal.get("cuts") or {}).items()
                    if cut.get("method") == "iptables"
                },
                "peers": {
                    str(name): [cid for cid, cut in cuts.items() if cut.get("method") == "iptables"]
                    for name, cuts in (journal.get("peers") or {}).items()
                    if isinstance(cuts, dict)
                },
            }
        for entry, info in sorted(self.loops(session).items()):
            number = int(entry[4:])
            mount = f"{ROOT}/reap/{session}-{number}"
            try:
                self._mount(self._loop_node(number), mount)
                try:
                    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        fcntl.ioctl(fd, FITHAW, 0)
                        result["thawed"].append(info["pool"])
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                    finally:
                        os.close(fd)
                finally:
                    if _libc.umount2(mount.encode(), 0) != 0:
                        _libc.umount2(mount.encode(), MNT_DETACH)
                    with contextlib.suppress(OSError):
                        os.rmdir(mount)
            except OSError as exc:
                result["errors"].append(f"{entry}: {exc}")
            try:
                self._detach(number, f"dcfire:{session}:{info['pool']}")
                result["detached"].append(entry)
            except OSError as exc:
                result["errors"].append(f"{entry} detach: {exc}")
        return result

    def _dead_journal(self, session: str, request: dict[str, Any]) -> dict[str, Any] | None:
        candidates: list[str] = []
        helper_pid = request.get("helper_pid")
        if isinstance(helper_pid, int) and helper_pid > 1:
            candidates.append(f"/proc/{helper_pid}/root{ROOT}/{session}/journal.json")
        mountpoint = request.get("state_mountpoint")
        if isinstance(mountpoint, str) and mountpoint.startswith("/") and ".." not in mountpoint:
            for pid in _pids_named("dockerd"):
                candidates.append(f"/proc/{pid}/root{mountpoint}/journal.json")
        for path in candidates:
            try:
                with open(path) as f:
                    data = json.load(f)
                if isinstance(data, dict) and data.get("session") == session:
                    return data
            except (OSError, ValueError):
                continue
        return None

    # -- dead-man switch --------------------------------------------------------------

    def undo_all(self) -> None:
        """Leave nothing applied: every cut removed, every pool thawed, and every loop
        device set to detach once its last mount goes (when the helper is removed). A new
        agent of a session that goes on adopts the journal and clears that again."""
        if self.undone:
            return
        self.undone = True
        with contextlib.suppress(Exception):
            self._undo_cuts(list(self.cuts))
        for name in list(self.peers):
            with contextlib.suppress(Exception):
                self._undo_peer(name)
        frozen = [(n, p) for n, p in self.pools.items() if p.get("frozen")]
        if frozen:
            with contextlib.suppress(Exception):
                self._set_frozen(frozen, False)
        for pool in self.pools.values():
            if pool.get("loop") is not None and not pool.get("attached"):
                with contextlib.suppress(OSError):
                    self._autoclear(int(pool["loop"]), pool["tag"], True)

    def op_shutdown(self, request: dict[str, Any]) -> dict[str, Any]:
        self.undo_all()
        return {"bye": True}


def _addresses(raw: Any) -> list[str]:
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


def _pids_named(comm: str) -> list[int]:
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: agent.py SESSION", file=sys.stderr)
        return 2
    out = os.fdopen(os.dup(1), "w", buffering=1)
    agent = Agent(argv[1], out)

    def on_signal(signum: int, frame: object) -> None:
        agent.undo_all()
        os._exit(0)

    def on_handover(signum: int, frame: object) -> None:
        os._exit(0)  # a new agent of this session adopts the journal and keeps the fire

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR1, on_handover)
    agent.send(
        {
            "ready": True,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "session": agent.session,
            "adopted": agent.adopted,
            "t": now_ms(),
        }
    )
    stdin = sys.stdin.buffer
    try:
        while True:
            line = stdin.readline()
            if not line:
                break  # the client is gone: dead-man switch
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                error = f"bad json: {exc}"
                agent.send({"id": None, "ok": False, "kind": "refused", "error": error})
                continue
            agent.handle(request)
            if request.get("op") == "shutdown":
                break
    finally:
        agent.undo_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
