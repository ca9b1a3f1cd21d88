"""Loop devices and their tags: attach, detach, autoclear, find, check.

Every loop device the agent attaches carries lo_file_name `dcfire:<session>:<pool>`, so a
reaper can find a dead session's devices without its journal, and an agent never mounts,
freezes or detaches a device that does not carry the tag it expects.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from .dispatch import Failed, Refused
from .kernel import mount_ext4
from .protocol import LoopInfo

# <linux/loop.h>, <linux/fs.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LOOP_MAJOR = 7
LO_FLAGS_AUTOCLEAR = 4
#: struct loop_info64; field 8 is lo_flags, field 9 lo_file_name (the tag)
LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32s2Q")
FLAGS = 8
FILE_NAME = 9
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


def node(number: int) -> str:
    """/dev/loop<number>, made with mknod when the helper's /dev lacks it (or has a wrong
    one)."""
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


def _status(fd: int) -> tuple[object, ...]:
    return LOOP_INFO64.unpack(fcntl.ioctl(fd, LOOP_GET_STATUS64, b"\0" * LOOP_INFO64.size))


def _tag(info: tuple[object, ...]) -> str:
    raw = info[FILE_NAME]
    assert isinstance(raw, bytes)
    return raw.split(b"\0")[0].decode(errors="replace")


def attach(image: str, tag: str, number: int | None = None) -> int:
    """Attach `image` to a free loop device (or to `number`), without autoclear (a killed
    helper must not lose it mid-session); return its number."""
    for _ in range(20):
        if number is None:
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
            try:
                free = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
        else:
            free = number
        dev = os.open(node(free), os.O_RDWR | os.O_CLOEXEC)
        backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            info = LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, tag.encode()[:63], b"", b"", 0, 0)
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


def find(session: str | None = None) -> dict[str, LoopInfo]:
    """Attached loop devices tagged by dcfire (of `session`, or of any session)."""
    found: dict[str, LoopInfo] = {}
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return found
    for entry in names:
        if not entry.startswith("loop") or not entry[4:].isdigit():
            continue
        if not os.path.exists(f"/sys/block/{entry}/loop"):
            continue  # not attached
        try:
            fd = os.open(node(int(entry[4:])), os.O_RDONLY | os.O_CLOEXEC)
            try:
                info = _status(fd)
            finally:
                os.close(fd)
        except OSError:
            continue
        parts = _tag(info).split(":")
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


def check_tag(number: int, tag: str) -> None:
    """Refuse a loop device that does not carry exactly `tag` (made by that pool's
    session), so an attach can never mount, or freeze, anything else."""
    fd = os.open(node(number), os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = _status(fd)
    except OSError as exc:
        raise Refused(f"loop{number} is not attached ({exc})") from None
    finally:
        os.close(fd)
    found = _tag(info)
    if found != tag[:63]:
        raise Refused(f"loop{number} is not pool {tag!r} (its tag is {found!r})")


def detach(number: int, tag: str) -> None:
    """LOOP_CLR_FD; the kernel defers it (autoclear) while the engine still mounts it."""
    try:
        fd = os.open(node(number), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if _tag(_status(fd)) != tag[:63]:
            return  # not ours any more
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: already detached
            raise
    finally:
        os.close(fd)


def autoclear(number: int, tag: str, on: bool) -> None:
    """Set or clear "detach on last close" (LOOP_CLR_FD sets it while mounted)."""
    fd = os.open(node(number), os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = list(LOOP_INFO64.unpack(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(232))))
        if _tag(tuple(info)) != tag[:63]:
            return
        old = info[FLAGS]
        assert isinstance(old, int)
        flags = old | LO_FLAGS_AUTOCLEAR if on else old & ~LO_FLAGS_AUTOCLEAR
        if flags != old:
            info[FLAGS] = flags
            fcntl.ioctl(fd, LOOP_SET_STATUS64, LOOP_INFO64.pack(*info))
    finally:
        os.close(fd)


def mount(device: str, target: str) -> None:
    """Mount ext4 `device` at `target` unless something is mounted there already."""
    os.makedirs(target, exist_ok=True)
    if os.path.ismount(target):
        return
    mount_ext4(device, target)
