"""A full disk: a filler file of ours takes every free block of a pool, so that writes on it
fail with ENOSPC while reads work; removing the file gives the space back.

The file is preallocated (fallocate: unwritten extents, no data written), in chunks that
halve on ENOSPC down to one block, so nothing that a process could still claim is left.
It is journalled before it is made, so the dead-man switch removes it too.
"""

from __future__ import annotations

import contextlib
import errno
import os

from .dispatch import Refused, handles
from .kernel import now_ms
from .pools import Pools
from .protocol import POOL_FILL, POOL_UNFILL, PoolFillReply, PoolsRequest, PoolUnfillReply

FILLER = ".dcfire-filler"


def fill(dirfd: int) -> int:
    """Fill the filesystem of the directory `dirfd` with the filler; return the bytes left."""
    fd = os.open(
        FILLER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd
    )
    try:
        stat = os.fstatvfs(dirfd)
        block = max(stat.f_bsize, 512)
        chunk = stat.f_bavail * stat.f_frsize
        offset = os.fstat(fd).st_size
        while chunk >= block:
            try:
                os.posix_fallocate(fd, offset, chunk)
                offset += chunk
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk // 2 // block * block
        after = os.fstatvfs(dirfd)
        return int(after.f_bavail * after.f_frsize)
    finally:
        os.close(fd)


def unfill(dirfd: int) -> None:
    """Remove the filler and commit, so the freed blocks can be allocated at once."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(FILLER, dir_fd=dirfd)
    os.fsync(dirfd)


class Filler:
    """Fill and empty this session's pools (never another session's)."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    @handles(POOL_FILL)
    def op_pool_fill(self, request: PoolsRequest) -> PoolFillReply:
        chosen = self.pools.named(request)
        for name, pool in chosen:
            if pool.get("attached"):
                raise Refused(f"pool {name!r} belongs to session {pool['attached']}")
            if pool.get("frozen") or pool.get("shutdown"):
                state = "frozen" if pool.get("frozen") else "shut down"
                raise Refused(f"pool {name!r} is {state}: lift that fault first")
        for _, pool in chosen:  # journalled first: the dead-man switch removes the filler
            pool["filled"] = True
        self.pools.save()
        times: dict[str, float] = {}
        free: dict[str, int] = {}
        for name, _ in chosen:
            fd = self.pools.pool_fd(name)
            try:
                free[name] = fill(fd)
            finally:
                os.close(fd)
            times[name] = now_ms()
        return {"filled": times, "free": free}

    @handles(POOL_UNFILL)
    def op_pool_unfill(self, request: PoolsRequest) -> PoolUnfillReply:
        times: dict[str, float] = {}
        for name, pool in self.pools.named(request):
            if pool.get("filled"):
                self.unfill_one(name)
                pool["filled"] = False
            times[name] = now_ms()
        self.pools.save()
        return {"unfilled": times}

    def unfill_one(self, name: str) -> None:
        fd = self.pools.pool_fd(name)
        try:
            unfill(fd)
        finally:
            os.close(fd)

    def undo_all(self) -> None:
        """Remove every filler (best effort: the pool may be gone)."""
        for name, pool in self.pools.pools.items():
            if pool.get("filled"):
                with contextlib.suppress(OSError, Refused):
                    self.unfill_one(name)
                    pool["filled"] = False
