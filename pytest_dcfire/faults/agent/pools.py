"""Storage pools: loop-backed ext4 filesystems that the agent freezes and thaws.

A pool is a sparse image file on the session's state volume (/dcfire/<session>/pools),
formatted with mkfs.ext4 (lazy init), attached to a loop device found with
LOOP_CTL_GET_FREE and mounted at /dcfire/mnt/<pool> inside the helper. That mount keeps
the superblock alive whatever the engine mounts or unmounts, and it is where FIFREEZE/FITHAW
are issued. Only mounts of loop devices that this agent created are ever frozen. Loop
devices are detached with LOOP_CLR_FD on destroy or reap, which the kernel defers until
the last mount is gone. `pool_attach` mounts another session's pool here (an xdist worker
acting on the shared copy) only if its device carries exactly that session's tag; such a
pool is frozen and thawed here, never detached or deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from . import loops
from .cuts import SESSION_RE, in_threads
from .dispatch import Failed, Refused, handles
from .kernel import now_ms, unmount
from .protocol import (
    FREEZE,
    POOL_ATTACH,
    POOL_CREATE,
    POOL_DESTROY,
    POOL_REMOUNT,
    POOL_SHUTDOWN,
    THAW,
    FreezeReply,
    PoolAttachReply,
    PoolAttachRequest,
    PoolCreateReply,
    PoolCreateRequest,
    PoolDestroyReply,
    PoolEntry,
    PoolRequest,
    PoolShutdownReply,
    PoolShutdownRequest,
    PoolsRequest,
    RemountReply,
    ThawReply,
    WireTarget,
)
from .targets import CONTAINER_ID_RE, Target

#: ext4's shutdown ioctl, _IOR('X', 125, __u32), and its flag that drops the journal's
#: uncommitted transactions and every dirty page: what a power cut leaves on the disk.
EXT4_IOC_SHUTDOWN = 0x8004587D
EXT4_GOING_FLAGS_NOLOGFLUSH = 2
#: Seconds a remount waits for the engine to let go of a shut-down pool (its containers'
#: mounts go when they exit; the superblock only comes back once every mount is gone).
REMOUNT_TIMEOUT = 5.0

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,95}$")


def pool_name(raw: Any) -> str:
    name = str(raw)
    if not NAME_RE.match(name) or ".." in name:
        raise Refused(f"bad pool name {name!r}")
    return name


class Pools:
    """This session's pools, by name."""

    def __init__(self, session: str, state: str, mnt_root: str, save: Callable[[], None]):
        self.session = session
        self.images = f"{state}/pools"
        self.mnt_root = mnt_root
        self.save = save
        self.pools: dict[str, PoolEntry] = {}
        #: How a mount is frozen or thawed (a seam for unit tests).
        self.freeze_one: Callable[[str, bool], float] = self._freeze_one
        os.makedirs(self.images, exist_ok=True)
        os.makedirs(mnt_root, exist_ok=True)

    def mount_point(self, name: str) -> str:
        return f"{self.mnt_root}/{name}"

    def _pool(self, raw: Any) -> tuple[str, PoolEntry]:
        name = pool_name(raw)
        pool = self.pools.get(name)
        if pool is None:
            raise Refused(f"{name!r} is not a storage pool of session {self.session}")
        return name, pool

    def named(self, request: Any) -> list[tuple[str, PoolEntry]]:
        names = request.get("names")
        if not isinstance(names, list):
            raise Refused("names must be a list")
        return [self._pool(n) for n in names]

    # -- adoption ---------------------------------------------------------------------

    def adopt(self, journal: dict[str, Any]) -> list[str]:
        """Take over the pools a previous agent of this session left; returns the lost."""
        lost: list[str] = []
        for name, pool in journal.items():
            if not NAME_RE.match(name):
                continue
            try:
                self._remount(name, pool)
                # A previous agent that ended set autoclear: this session goes on.
                if not pool.get("attached"):
                    loops.autoclear(int(pool["loop"]), pool["tag"], False)
                self.pools[name] = pool
            except (OSError, KeyError, TypeError, ValueError) as exc:
                lost.append(f"{name}: {exc}")  # e.g. a crash between image and attach
        return lost

    def _remount(self, name: str, pool: dict[str, Any]) -> None:
        """Mount an adopted pool here again (same superblock, frozen or not)."""
        mount = self.mount_point(name)
        if os.path.ismount(mount):
            return
        number = int(pool["loop"])
        if pool.get("attached"):  # another session's pool: never re-attached by us
            loops.check_tag(number, pool["tag"])
            loops.mount(loops.node(number), mount)
            return
        mine = loops.find(self.session).get(f"loop{number}")
        if mine is None or mine["pool"] != name[:40]:
            # Detached meanwhile (should not happen: no autoclear): take the same number back.
            loops.attach(pool["image"], pool["tag"], number)
        loops.mount(loops.node(number), mount)

    # -- operations -------------------------------------------------------------------

    @handles(POOL_CREATE)
    def op_pool_create(self, request: PoolCreateRequest) -> PoolCreateReply:
        name = pool_name(request.get("name", ""))
        if name in self.pools:
            raise Refused(f"pool {name!r} exists")
        size_mb = int(request.get("size_mb", 0))
        if not 16 <= size_mb <= 1 << 20:
            raise Refused(f"pool size {size_mb} MiB is outside 16..1048576")
        image = f"{self.images}/{name}.img"
        tag = f"dcfire:{self.session}:{name[:40]}"
        fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size_mb << 20)
        finally:
            os.close(fd)
        pool: PoolEntry = {
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
            number = loops.attach(image, tag)
            pool["loop"] = number
            self.pools[name] = pool
            self.save()
            mount = self.mount_point(name)
            loops.mount(loops.node(number), mount)
            # An empty volume lets the engine copy the image's files (and ownership) in.
            with contextlib.suppress(OSError):
                os.rmdir(f"{mount}/lost+found")
        except BaseException:
            self._destroy(name, pool)
            raise
        with open(f"/sys/block/loop{number}/dev") as f:
            dev = f.read().strip()
        return {"loop": number, "device": f"/dev/loop{number}", "dev": dev}

    @handles(POOL_ATTACH)
    def op_pool_attach(self, request: PoolAttachRequest) -> PoolAttachReply:
        """Mount another session's pool here, to freeze and thaw it (`dcfire_share =
        session`: a worker's agent acting on the shared copy). Its loop device must carry
        that session's tag for that pool; detaching and deleting stay with its owner."""
        name = pool_name(request.get("name", ""))
        owner = str(request.get("session", ""))
        if not SESSION_RE.match(owner):
            raise Refused(f"bad session {owner!r}")
        if name in self.pools:
            raise Refused(f"pool {name!r} exists")
        number = int(request.get("loop", -1))
        if number < 0:
            raise Refused("no loop device number")
        tag = f"dcfire:{owner}:{name[:40]}"
        loops.check_tag(number, tag)
        pool: PoolEntry = {
            "image": None,
            "tag": tag,
            "loop": number,
            "frozen": False,
            "volume": str(request.get("volume", "")),
            "attached": owner,
        }
        loops.mount(loops.node(number), self.mount_point(name))
        self.pools[name] = pool
        self.save()
        return {"loop": number, "attached": name}

    @handles(FREEZE)
    def op_freeze(self, request: PoolsRequest) -> FreezeReply:
        return {"frozen": self.set_frozen(self.named(request), True)}

    @handles(THAW)
    def op_thaw(self, request: PoolsRequest) -> ThawReply:
        return {"thawed": self.set_frozen(self.named(request), False)}

    @handles(POOL_SHUTDOWN)
    def op_pool_shutdown(self, request: PoolShutdownRequest) -> PoolShutdownReply:
        """Shut the pools' filesystems down as a power cut leaves them: nothing more reaches
        the disk, every I/O returns EIO; what the journal had committed is what survives."""
        pools = self.named(request)
        users = request.get("users") or {}
        if not isinstance(users, dict):
            raise Refused("users must map pools to containers")
        for name, pool in pools:
            if pool.get("attached"):
                raise Refused(
                    f"pool {name!r} belongs to session {pool['attached']}: only its owner can "
                    "shut it down (it keeps a mount of it)"
                )
        for name, pool in pools:  # journalled first: a killed session's pool is mounted again
            pool["shutdown"] = True
            pool["users"] = wire_users(users.get(name))
        self.save()
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(name: str, pool: PoolEntry) -> None:
            try:
                times[name] = self.shutdown_one(name)
            except (OSError, Refused) as exc:
                errors.append(f"{name}: {exc}")

        for name, pool in pools:  # one ioctl each, microseconds: no threads needed
            one(name, pool)
        if errors:
            raise Failed("; ".join(errors))
        return {"shut": times}

    @handles(POOL_REMOUNT)
    def op_pool_remount(self, request: PoolsRequest) -> RemountReply:
        """Mount shut-down pools again (their journals replay). Every container that uses a
        pool must have exited first: the engine's mount of it keeps the dead superblock."""
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(name: str, pool: PoolEntry) -> None:
            if not pool.get("shutdown"):
                times[name] = now_ms()
                return
            try:
                times[name] = self.remount_one(name, pool)
            except OSError as exc:
                errors.append(f"{name}: {exc}")
                return
            pool["shutdown"] = False
            pool.pop("users", [])

        pools = self.named(request)
        if len(pools) == 1:
            one(*pools[0])
        else:  # each mount replays its journal: side by side
            in_threads(one, pools)
        self.save()
        if errors:
            raise Failed("; ".join(errors))
        return {"remounted": times}

    @handles(POOL_DESTROY)
    def op_pool_destroy(self, request: PoolRequest) -> PoolDestroyReply:
        name, pool = self._pool(request.get("name", ""))
        self._destroy(name, pool)
        return {"destroyed": name}

    # -- freezing ---------------------------------------------------------------------

    def _freeze_one(self, name: str, freeze: bool) -> float:
        mount = self.mount_point(name)
        fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if os.major(st.st_dev) != loops.LOOP_MAJOR:
                raise Refused(f"{mount} is not a loop-backed pool; refusing to freeze it")
            if os.stat(self.mnt_root).st_dev == st.st_dev:
                raise Refused(f"pool {name} is not mounted; refusing to freeze its parent")
            try:
                fcntl.ioctl(fd, loops.FIFREEZE if freeze else loops.FITHAW, 0)
            except OSError as exc:
                # EBUSY: already frozen; EINVAL: not frozen. Both are the wanted state.
                if exc.errno not in ((errno.EBUSY,) if freeze else (errno.EINVAL,)):
                    raise
            return now_ms()
        finally:
            os.close(fd)

    def pool_fd(self, name: str) -> int:
        """An fd on the pool's mount, checked to be a loop-backed pool of ours."""
        mount = self.mount_point(name)
        fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(fd)
        if os.major(st.st_dev) != loops.LOOP_MAJOR or os.stat(self.mnt_root).st_dev == st.st_dev:
            os.close(fd)
            raise Refused(f"{mount} is not a mounted loop-backed pool; refusing to touch it")
        return fd

    def shutdown_one(self, name: str) -> float:
        fd = self.pool_fd(name)
        try:
            flags = struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH)
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, flags)
            return now_ms()
        finally:
            os.close(fd)

    def remount_one(self, name: str, pool: PoolEntry) -> float:
        """Unmount our mount and mount again until the kernel hands out a live superblock."""
        mount = self.mount_point(name)
        device = loops.node(int(pool["loop"] or 0))
        deadline = time.monotonic() + REMOUNT_TIMEOUT
        while True:
            if os.path.ismount(mount):
                unmount(mount)
            loops.mount(device, mount)
            if not is_shut_down(mount):
                return now_ms()
            if time.monotonic() > deadline:
                raise OSError(
                    errno.EBUSY,
                    f"still shut down {REMOUNT_TIMEOUT:.0f} s later: a container still mounts "
                    "it (stop every container that uses the pool before it is mounted again)",
                )
            time.sleep(0.05)

    def set_frozen(self, pools: list[tuple[str, PoolEntry]], freeze: bool) -> dict[str, float]:
        """Freeze (journalled before: an interrupt still thaws) or thaw (journalled after)."""
        if freeze:
            for _, pool in pools:
                pool["frozen"] = True
            self.save()
        times: dict[str, float] = {}
        errors: list[str] = []

        def one(name: str, pool: PoolEntry) -> None:
            if not freeze and pool.get("shutdown"):
                return  # a shut-down pool answers EIO; remounting it is what brings it back
            try:
                times[name] = self.freeze_one(name, freeze)
            except (OSError, Refused) as exc:
                errors.append(f"{name}: {exc}")

        if len(pools) == 1:
            one(*pools[0])
        else:  # each FIFREEZE syncs its filesystem first: do them side by side
            in_threads(one, list(pools))
        if not freeze:
            for name, pool in pools:
                if name in times:
                    pool["frozen"] = False
            self.save()
        if errors:
            raise Failed("; ".join(errors))
        return times

    # -- removal ----------------------------------------------------------------------

    def _destroy(self, name: str, pool: PoolEntry) -> None:
        mount = self.mount_point(name)
        if os.path.ismount(mount):
            if pool.get("frozen"):
                self.freeze_one(name, False)
            unmount(mount)
        with contextlib.suppress(OSError):
            os.rmdir(mount)
        if pool.get("attached"):  # another session's pool: only our mount was ours
            self.pools.pop(name, None)
            self.save()
            return
        loop = pool.get("loop")
        if loop is not None:
            loops.detach(int(loop), pool["tag"])
        image = pool.get("image")
        if image:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(image)
        self.pools.pop(name, None)
        self.save()

    def undo_all(self) -> None:
        """Thaw every frozen pool, mount every shut-down one again (best effort: it cannot
        come back while a container still mounts it), and set every loop device of ours to
        detach once its last mount goes (when the helper is removed)."""
        frozen = [(n, p) for n, p in self.pools.items() if p.get("frozen")]
        if frozen:
            with contextlib.suppress(Exception):
                self.set_frozen(frozen, False)
        for name, pool in self.pools.items():
            if pool.get("shutdown"):
                # A failed disk's containers still run on it: stopped, so that it can come
                # back (a power loss's were killed already).
                stopped = stop_users(pool.pop("users", []))
                with contextlib.suppress(OSError):
                    if stopped:
                        self.remount_one(name, pool)
                    else:
                        if os.path.ismount(self.mount_point(name)):
                            unmount(self.mount_point(name))
                        loops.mount(loops.node(int(pool["loop"] or 0)), self.mount_point(name))
                    pool["shutdown"] = is_shut_down(self.mount_point(name))
        for pool in self.pools.values():
            loop = pool.get("loop")
            if loop is not None and not pool.get("attached"):
                with contextlib.suppress(OSError):
                    loops.autoclear(int(loop), pool["tag"], True)

    def keep_loops(self) -> None:
        """A new owner goes on with these pools (`serve`): undo what `undo_all` set, so that
        no loop device of ours detaches when its last mount goes (a power loss unmounts)."""
        for pool in self.pools.values():
            loop = pool.get("loop")
            if loop is not None and not pool.get("attached"):
                with contextlib.suppress(OSError):
                    loops.autoclear(int(loop), pool["tag"], False)

    def release_all(self) -> list[str]:
        """Unmount every pool here and detach every loop device of this session, whatever
        state a pool is in (thawed by `undo_all` first; shut down, failing or full ones just
        go): the session is over. The kernel detaches a device the engine still mounts when
        that mount goes. Returns the problems met."""
        problems: list[str] = []
        for name, pool in list(self.pools.items()):
            mount = self.mount_point(name)
            try:
                if os.path.ismount(mount):
                    unmount(mount)
                with contextlib.suppress(OSError):
                    os.rmdir(mount)
                if pool.get("loop") is not None and not pool.get("attached"):
                    loops.detach(int(pool["loop"] or 0), pool["tag"])
            except OSError as exc:
                problems.append(f"{name}: {exc}")
        for entry, info in loops.find(self.session).items():  # any the journal missed
            try:
                loops.detach(int(entry[4:]), f"dcfire:{self.session}:{info['pool']}")
            except OSError as exc:
                problems.append(f"{entry}: {exc}")
        return problems


def wire_users(raw: Any) -> list[WireTarget]:
    """A pool's users as journalled: full container ids and pids, checked for shape only
    (they are verified against the kernel when they are stopped)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Refused("a pool's users must be a list of containers")
    users: list[WireTarget] = []
    for item in raw:
        if not isinstance(item, dict):
            raise Refused(f"bad user {item!r}")
        cid, pid = str(item.get("id", "")), item.get("pid")
        if not CONTAINER_ID_RE.match(cid) or not isinstance(pid, int) or pid <= 1:
            raise Refused(f"bad user {item!r}")
        users.append({"id": cid, "pid": pid})
    return users


def stop_users(users: list[WireTarget]) -> bool:
    """SIGKILL each user that is still the same process of the same container (pidfd and
    cgroup checked: a reused pid is never signalled); True if one was stopped."""
    stopped = False
    for user in users:
        try:
            target = Target(user["id"], user["pid"])
        except (Refused, OSError):
            continue  # gone already, or no longer that container
        try:
            signal.pidfd_send_signal(target.pidfd, signal.SIGKILL)
            stopped = True
        except ProcessLookupError:
            pass
        finally:
            target.close()
    return stopped


def is_shut_down(mount: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether the filesystem mounted at `mount` is shut down (its superblock options say
    `shutdown`; every I/O on it returns EIO)."""
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    found = False
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or fields[4] != mount or " - " not in line:
            continue
        found = "shutdown" in line.rsplit(" ", 1)[-1].split(",")  # the last mount wins
    return found
