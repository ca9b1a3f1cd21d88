"""The few system calls Python's os module lacks (setns, mount, umount2), and the clock."""

from __future__ import annotations

import ctypes
import os
import time

CLONE_NEWNET = 0x40000000
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def setns_net(fd: int) -> int:
    """setns(fd, CLONE_NEWNET) on this thread; returns libc's result (0 is success)."""
    return int(_libc.setns(fd, CLONE_NEWNET))


def enter_net(fd: int) -> None:
    _check(setns_net(fd), "setns into target netns")


def mount_ext4(device: str, target: str) -> None:
    _check(_libc.mount(device.encode(), target.encode(), b"ext4", 0, b""), "mount")


def unmount(target: str) -> None:
    """Unmount, lazily if the mount is busy."""
    if _libc.umount2(target.encode(), 0) != 0:
        _libc.umount2(target.encode(), MNT_DETACH)


def now_ms() -> float:
    """The agent's clock: monotonic milliseconds (the client never compares it with its own)."""
    return time.monotonic() * 1000.0
