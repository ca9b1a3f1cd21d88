"""The agent: its parts (cuts, peer cuts, power, pools, reaper), the journal they share,
the dispatch of one request to its handler, and the dead-man switch."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import threading
import time
from typing import Any, TextIO

from . import loops
from .cuts import SESSION_RE, Cuts, Netfilter
from .dispatch import Failed, Refused, Stale, handlers, handles
from .filler import Filler
from .journal import Journal
from .kernel import now_ms
from .peers import Peers
from .pools import Pools
from .power import Power
from .protocol import (
    AGENT_MODULE,
    PING,
    SHUTDOWN,
    STATUS,
    Adopted,
    Empty,
    PingReply,
    ShutdownReply,
    StatusReply,
)
from .reap import Reaper

ROOT = "/dcfire"
OP_RE = re.compile(r"^[a-z_]+$")


class Agent:
    """One per session, in the session's helper container."""

    def __init__(self, session: str, out: TextIO, root: str = ROOT) -> None:
        if not SESSION_RE.match(session):
            raise SystemExit(f"bad session id {session!r}")
        self.session = session
        self.state = f"{root}/{session}"
        self.out = out
        self.out_lock = threading.Lock()
        self.undone = False
        self.journal = Journal(self.state, session)
        os.makedirs(self.state, exist_ok=True)
        self.nf = Netfilter(session, self.save)
        self.cuts = Cuts(self.nf)
        self.peers = Peers(self.nf)
        self.pools = Pools(session, self.state, f"{root}/mnt", self.save)
        self.filler = Filler(self.pools)
        self.handlers = handlers(
            self, self.cuts, self.peers, Power(), self.pools, self.filler, Reaper(session, root)
        )
        self._take_lock()
        self.adopted = self._adopt()

    # -- journal ----------------------------------------------------------------------

    def save(self) -> None:
        """Journal everything applied now (every part calls it on each change)."""
        self.journal.write(self.pools.pools, self.cuts.entries(), self.peers.entries())

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
        if AGENT_MODULE.encode() in argv and self.session.encode() in argv:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)  # hand over: exit without undoing anything

    def _adopt(self) -> Adopted:
        """Take over the pools, cuts and peer cuts a previous agent of this session left."""
        old = self.journal.read()
        if old is None:
            return {"pools": [], "lost": [], "cuts": []}
        lost = self.pools.adopt(old.get("pools") or {})
        cuts = self.cuts.adopt(old.get("cuts") or {})
        peers = self.peers.adopt(old.get("peers") or {})
        self.save()
        return {"pools": sorted(self.pools.pools), "lost": lost, "cuts": cuts, "peers": peers}

    # -- dispatch ---------------------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self.out_lock:
            self.out.write(line)
            self.out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        """Answer one request: its handler's result with the agent's times, or the kind of
        failure and why."""
        rid = request.get("id")
        op = str(request.get("op", ""))
        t_recv = now_ms()
        handler = self.handlers.get(op)
        try:
            if handler is None or not OP_RE.match(op):
                raise Refused(f"unknown operation {op!r}")
            result: dict[str, Any] = handler(request)
            result.setdefault("t_recv", t_recv)
            result["t_reply"] = now_ms()
            self.send({"id": rid, "ok": True, "result": result})
        except Refused as exc:
            kind = "stale" if isinstance(exc, Stale) else "refused"
            self.send({"id": rid, "ok": False, "kind": kind, "error": str(exc)})
        except (Failed, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.send({"id": rid, "ok": False, "kind": "failed", "error": f"{op}: {exc}"})
        finally:
            self.nf.bury()

    @handles(PING)
    def op_ping(self, request: Empty) -> PingReply:
        return {"pid": os.getpid(), "session": self.session}

    @handles(STATUS)
    def op_status(self, request: Empty) -> StatusReply:
        return {
            "cuts": self.cuts.entries(),
            "peers": self.peers.entries(),
            "pools": self.pools.pools,
            "loops": loops.find(),
        }

    # -- dead-man switch --------------------------------------------------------------

    def undo_all(self) -> None:
        """Leave nothing applied: every cut removed, then every peer cut, then every pool
        thawed, every filler removed and every loop device set to detach once its last
        mount goes. A new agent of
        a session that goes on adopts the journal and clears that again."""
        if self.undone:
            return
        self.undone = True
        self.cuts.undo_all()
        self.peers.undo_all()
        self.filler.undo_all()
        self.pools.undo_all()

    def next_owner(self, out: TextIO) -> None:
        """A new session takes the system over (`serve`): answer it on `out`, and let its
        fires be undone again when it goes."""
        self.out = out
        self.undone = False
        self.pools.keep_loops()

    @handles(SHUTDOWN)
    def op_shutdown(self, request: Empty) -> ShutdownReply:
        self.undo_all()
        return {"bye": True}
