"""The wire protocol between the helper's agent and its client: one module, both sides.

One JSON object per line. A request is `{"id": N, "op": NAME, ...fields}`; the answer is
`{"id": N, "ok": true, "result": {...}}` or `{"id": N, "ok": false, "kind": "refused" |
"stale" | "failed", "error": TEXT}`. The agent's first line is a `Hello`. Times are the
agent's `time.monotonic()` in milliseconds; every result carries `t_recv` and `t_reply` so
the client can place them on its own clock (the two clocks are never compared directly).

Every operation is one constant below, declared with its name and annotated with its
request and reply types: `DISK: Op[DiskRequest, DiskReply] = declare("disk")` is the one
place that registers it (in `OPS`). Then give it a handler decorated with `@handles(DISK)`
in the agent (the agent refuses to start while an op has no handler, and mypy checks the
handler's types), and call it from the client with `helper.call(DISK, DiskRequest(...))`.

Standard library only, and Python 3.10 compatible: the agent imports it inside the helper
image (Debian's python3), the plugin imports it on the test machine. The types are
promises, not checks: the agent still validates every field it reads (a request may come
from anything that can write to its stdin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypedDict, TypeVar

#: Bumped when a request or reply changes shape; the agent sends it in its hello.
PROTOCOL = 1
#: The agent package's name inside the helper image (`python3 -m dcfire_agent SESSION`).
AGENT_MODULE = "dcfire_agent"

Backend = Literal["auto", "nftables", "iptables"]
BACKENDS: tuple[Backend, ...] = ("auto", "nftables", "iptables")
#: How an answer failed: the request named something the agent must not touch; a target's
#: pid is gone or another process's (inspect it again and retry); or the kernel said no.
ErrorKind = Literal["refused", "stale", "failed"]
#: What the agent does when the session's process dies: remove the whole session (its
#: containers, volumes, networks, pools), or only undo its faults (the system is kept).
OnOwnerDeath = Literal["remove", "undo-faults"]
#: How a cut was made (a peer cut too).
CutMethod = Literal["nftables", "iptables"]

Q = TypeVar("Q")
R = TypeVar("R")


@dataclass(frozen=True)
class Op(Generic[Q, R]):
    """One operation: its name on the wire; `Q` and `R` are its request and reply types."""

    name: str


#: Every operation by name (`declare` adds them): the agent has exactly one handler for each.
OPS: dict[str, Op[Any, Any]] = {}


def declare(name: str) -> Op[Any, Any]:
    """Register an operation; annotate the constant it is assigned to with its types."""
    if name in OPS:
        raise ValueError(f"operation {name!r} is declared twice")
    op: Op[Any, Any] = Op(name)
    OPS[name] = op
    return op


# -- shared pieces ----------------------------------------------------------------------


class WireTarget(TypedDict):
    """A container to act on: full id and the pid of its init, verified by the agent."""

    id: str
    pid: int


class PeerTarget(WireTarget, total=False):
    """A peer cut's target: its side (a group number: the other groups' addresses are
    blocked), or an explicit list of addresses to block, or `everyone` (all but loopback);
    `drop` the chains that drop ("in", "out"; default both: a one-way partition gives each
    side one), `loss` the percent dropped (default 100; less: flaky)."""

    side: int
    block: list[str]
    everyone: bool
    drop: list[str]
    loss: int


class Timed(TypedDict):
    """What the agent adds to every result: when it read the request and when it answered
    (the reply types below leave them out; the client's `Reply` has them)."""

    t_recv: float
    t_reply: float


class _CutEntry(TypedDict):
    pid: int
    netns: int
    method: CutMethod


class CutEntry(_CutEntry, total=False):
    """A cut as journalled (and reported by `status`); `block` for a peer cut, and its
    rule's shape when it is not a plain partition's."""

    block: list[str]
    everyone: bool
    drop: list[str]
    loss: int


class _PoolEntry(TypedDict):
    image: str | None
    tag: str
    loop: int | None
    frozen: bool
    volume: str


class PoolEntry(_PoolEntry, total=False):
    """A storage pool as journalled; `attached` names the owner of another session's pool;
    `shutdown` is set while a power loss or a failed disk holds it shut down (the dead-man
    switch mounts it again); `filled` while a filler file of ours fills it (a full disk: the
    dead-man switch removes the file)."""

    attached: str
    shutdown: bool
    filled: bool
    #: The containers that used a failed disk (shut down under them), so that the dead-man
    #: switch can stop them and mount the pool again.
    users: list[WireTarget]


class LoopInfo(TypedDict):
    """A dcfire loop device, found by its tag."""

    session: str
    pool: str
    backing: str


class _Adopted(TypedDict):
    pools: list[str]
    lost: list[str]
    cuts: list[str]


class Adopted(_Adopted, total=False):
    """What a new agent took over from its session's journal."""

    peers: list[str]


class Hello(TypedDict):
    """The agent's first line."""

    ready: bool
    protocol: int
    pid: int
    session: str
    adopted: Adopted
    t: float
    on_owner_death: OnOwnerDeath
    #: The session's process is visible from the helper (same host and pid namespace): its
    #: death is seen at once; otherwise a grace period without a new agent stands for it.
    owner_visible: bool


# -- requests and replies, one pair per operation ----------------------------------------


class Empty(TypedDict):
    """A request without fields."""


class PingReply(TypedDict):
    pid: int
    session: str


class StatusReply(TypedDict):
    cuts: dict[str, CutEntry]
    peers: dict[str, dict[str, CutEntry]]
    pools: dict[str, PoolEntry]
    loops: dict[str, LoopInfo]


class _CutRequest(TypedDict):
    targets: list[WireTarget]


class CutRequest(_CutRequest, total=False):
    backend: Backend


class CutReply(TypedDict):
    method: CutMethod
    #: container id -> when its cut was in place
    cuts: dict[str, float]
    t_prepared: float


class UncutRequest(TypedDict, total=False):
    #: default: every cut
    ids: list[str]


class UncutReply(TypedDict):
    restored: dict[str, float]
    not_cut: list[str]


class _UncutForeignRequest(TypedDict):
    session: str
    targets: list[WireTarget]


class UncutForeignRequest(_UncutForeignRequest, total=False):
    #: the dead session's iptables peer cuts
    peers: list[str]


class UncutForeignReply(TypedDict):
    restored: list[str]


class _PeerCutRequest(TypedDict):
    name: str
    targets: list[PeerTarget]


class PeerCutRequest(_PeerCutRequest, total=False):
    backend: Backend


class PeerCutReply(CutReply):
    #: container id -> the IPv4 addresses read in its netns
    addresses: dict[str, list[str]]


class PeerRejoinRequest(TypedDict):
    name: str
    targets: list[WireTarget]


class _PeerRejoinReply(TypedDict):
    cuts: dict[str, float]


class PeerRejoinReply(_PeerRejoinReply, total=False):
    #: absent when no target needed a new cut
    method: CutMethod


class PeerUncutRequest(TypedDict):
    name: str


class KillRequest(TypedDict):
    targets: list[WireTarget]


class KillReply(TypedDict):
    method: Literal["sigkill"]
    killed: dict[str, float]


class _PoolCreateRequest(TypedDict):
    name: str
    size_mb: int


class PoolCreateRequest(_PoolCreateRequest, total=False):
    volume: str


class PoolCreateReply(TypedDict):
    loop: int
    device: str
    #: "major:minor"
    dev: str


class _PoolAttachRequest(TypedDict):
    name: str
    session: str
    loop: int


class PoolAttachRequest(_PoolAttachRequest, total=False):
    volume: str


class PoolAttachReply(TypedDict):
    loop: int
    attached: str


class PoolsRequest(TypedDict):
    names: list[str]


class PoolShutdownRequest(PoolsRequest, total=False):
    """`users`: pool -> the containers still running on it (a failed disk, not a power
    loss): journalled, so that the dead-man switch can stop them and mount it again."""

    users: dict[str, list[WireTarget]]


class FreezeReply(TypedDict):
    frozen: dict[str, float]


class ThawReply(TypedDict):
    thawed: dict[str, float]


class PoolShutdownReply(TypedDict):
    #: pool -> when its filesystem was shut down (every I/O returns EIO from then on)
    shut: dict[str, float]


class RemountReply(TypedDict):
    #: pool -> when it was mounted again (its journal replayed)
    remounted: dict[str, float]


class PoolFillReply(TypedDict):
    #: pool -> when its filler file had taken every free block (writes fail with ENOSPC)
    filled: dict[str, float]
    #: pool -> bytes still free after filling (less than one block)
    free: dict[str, int]


class PoolUnfillReply(TypedDict):
    #: pool -> when its filler file was gone (and the freed blocks committed)
    unfilled: dict[str, float]


class PoolRequest(TypedDict):
    name: str


class PoolDestroyReply(TypedDict):
    destroyed: str


class _ReapRequest(TypedDict):
    session: str


class ReapRequest(_ReapRequest, total=False):
    helper_pid: int | None
    state_mountpoint: str | None


class DeadJournal(TypedDict):
    """The iptables cuts and peer cuts (container ids) of a dead session: only those
    outlived its agent."""

    cuts: dict[str, CutEntry]
    peers: dict[str, list[str]]


class ReapReply(TypedDict):
    thawed: list[str]
    detached: list[str]
    errors: list[str]
    journal: DeadJournal | None


class ShutdownReply(TypedDict):
    bye: bool


# -- the operations ---------------------------------------------------------------------

PING: Op[Empty, PingReply] = declare("ping")
STATUS: Op[Empty, StatusReply] = declare("status")
CUT: Op[CutRequest, CutReply] = declare("cut")
UNCUT: Op[UncutRequest, UncutReply] = declare("uncut")
UNCUT_FOREIGN: Op[UncutForeignRequest, UncutForeignReply] = declare("uncut_foreign")
PEER_CUT: Op[PeerCutRequest, PeerCutReply] = declare("peer_cut")
PEER_REJOIN: Op[PeerRejoinRequest, PeerRejoinReply] = declare("peer_rejoin")
PEER_UNCUT: Op[PeerUncutRequest, UncutReply] = declare("peer_uncut")
KILL: Op[KillRequest, KillReply] = declare("kill")
POOL_CREATE: Op[PoolCreateRequest, PoolCreateReply] = declare("pool_create")
POOL_ATTACH: Op[PoolAttachRequest, PoolAttachReply] = declare("pool_attach")
FREEZE: Op[PoolsRequest, FreezeReply] = declare("freeze")
THAW: Op[PoolsRequest, ThawReply] = declare("thaw")
POOL_DESTROY: Op[PoolRequest, PoolDestroyReply] = declare("pool_destroy")
POOL_SHUTDOWN: Op[PoolShutdownRequest, PoolShutdownReply] = declare("pool_shutdown")
POOL_REMOUNT: Op[PoolsRequest, RemountReply] = declare("pool_remount")
POOL_FILL: Op[PoolsRequest, PoolFillReply] = declare("pool_fill")
POOL_UNFILL: Op[PoolsRequest, PoolUnfillReply] = declare("pool_unfill")
REAP: Op[ReapRequest, ReapReply] = declare("reap")
SHUTDOWN: Op[Empty, ShutdownReply] = declare("shutdown")
