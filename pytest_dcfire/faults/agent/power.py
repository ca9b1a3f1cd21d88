"""Power: SIGKILL a container's init through its pidfd."""

from __future__ import annotations

import contextlib
import signal

from .dispatch import handles
from .kernel import now_ms
from .protocol import KILL, KillReply, KillRequest
from .targets import close_all, parse_targets


class Power:
    @handles(KILL)
    def op_kill(self, request: KillRequest) -> KillReply:
        """SIGKILL each target's init at once: instant, and unlike the engine's kill it never
        waits for processes that are stuck on frozen storage."""
        targets = parse_targets(request.get("targets"))
        times: dict[str, float] = {}
        try:
            for t in targets:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(t.pidfd, signal.SIGKILL)
                times[t.cid] = now_ms()
        finally:
            close_all(targets)
        return {"method": "sigkill", "killed": times}
