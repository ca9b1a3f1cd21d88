"""Reaping a dead session: thaw and detach its pools, and hand back what its journal says
outlived it (iptables cuts), so the client can ask for those to be undone."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Any

from . import loops
from .cuts import SESSION_RE
from .dispatch import Refused, handles
from .journal import JOURNAL, read_journal
from .kernel import unmount
from .procs import pids_named
from .protocol import REAP, DeadJournal, ReapReply, ReapRequest

#: Where every helper keeps its state (the image's layout, whoever runs this agent).
STATE_ROOT = "/dcfire"


class Reaper:
    def __init__(self, session: str, root: str) -> None:
        self.session = session
        self.root = root

    @handles(REAP)
    def op_reap(self, request: ReapRequest) -> ReapReply:
        """Thaw and detach every pool of a dead session, found by the loop devices' tags.

        A pool is thawed through a fresh mount here: mounting a device that is mounted
        elsewhere (or whose last mount went while frozen) returns the same superblock, so
        FITHAW reaches it whoever else holds it. Then LOOP_CLR_FD: the device goes as soon
        as the engine and the dead helper have let go of it.
        """
        session = str(request.get("session", ""))
        if not SESSION_RE.match(session) or session == self.session:
            raise Refused(f"cannot reap session {session!r}")
        result: ReapReply = {"thawed": [], "detached": [], "errors": [], "journal": None}
        journal = read_journal(self.journal_paths(session, request), session)
        if journal is not None:
            result["journal"] = outlived(journal)
        for entry, info in sorted(loops.find(session).items()):
            number = int(entry[4:])
            mount = f"{self.root}/reap/{session}-{number}"
            try:
                loops.mount(loops.node(number), mount)
                try:
                    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        fcntl.ioctl(fd, loops.FITHAW, 0)
                        result["thawed"].append(info["pool"])
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                    finally:
                        os.close(fd)
                finally:
                    unmount(mount)
                    with contextlib.suppress(OSError):
                        os.rmdir(mount)
            except OSError as exc:
                result["errors"].append(f"{entry}: {exc}")
            try:
                loops.detach(number, f"dcfire:{session}:{info['pool']}")
                result["detached"].append(entry)
            except OSError as exc:
                result["errors"].append(f"{entry} detach: {exc}")
        return result

    def journal_paths(self, session: str, request: Any) -> list[str]:
        """Where the dead session's journal may be: inside its helper's root, or in its
        state volume seen from the engine's root."""
        candidates: list[str] = []
        helper_pid = request.get("helper_pid")
        if isinstance(helper_pid, int) and helper_pid > 1:
            candidates.append(f"/proc/{helper_pid}/root{STATE_ROOT}/{session}/{JOURNAL}")
        mountpoint = request.get("state_mountpoint")
        if isinstance(mountpoint, str) and mountpoint.startswith("/") and ".." not in mountpoint:
            for pid in pids_named("dockerd"):
                candidates.append(f"/proc/{pid}/root{mountpoint}/{JOURNAL}")
        return candidates


def outlived(journal: dict[str, Any]) -> DeadJournal:
    """The iptables cuts and peer cuts of a journal: nftables ones died with their agent."""
    return {
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
