"""Power loss, crash and pause: what happens to the processes of a burning site.

A power loss and a crash SIGKILL every target container at once and, on restore, start the
same containers again (same disks, same network endpoints; nothing is re-applied); they
differ in what happens to the disks (storage.py: shut down, or frozen). The kill is
sent by the helper's agent to each container's init through a pidfd (the kernel then kills
the whole pid namespace): it takes microseconds and never blocks. The engine's own `kill`
is the fallback when there is no helper; it is avoided otherwise because a process blocked
writing to a frozen pool sleeps uninterruptibly until the thaw, and Engine 20.10 then holds
the kill call for 12 s and fails it ("tried to kill container, but did not receive an exit
event"; measured here, the engine itself stays responsive). The container exits as soon as
the pool is thawed.

That is also why, in `crash` mode, the fire must kill *before* it freezes storage and
thaw *before* it powers on: apply network → kill → storage, undo in reverse (thaw → start →
network). `power_on` waits (bounded) for each container to have exited and says so clearly
if a process is still stuck on frozen storage.

A restarted container has a new netns, so a network cut made before the kill is gone with
the old one; the cutter's restore handles that (the agent's cut lived in the old netns,
whose table is deleted or vanishes with it), and the pid cache is dropped so the next fire
finds the new pid.

Freeze mode is the engine's pause/unpause (cgroup freezer), all targets side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import docker.errors
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.agent.protocol import KILL, KillRequest
from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.faults.network import Target, Targets, container_id, parallel, wire
from pytest_dcfire.faults.timing import FaultTiming
from pytest_dcfire.runtime.engine import Engine, monotonic_ms

#: Seconds `power_on` waits for killed containers to be reported as exited.
EXIT_TIMEOUT = 15.0
RUNNING = ("running", "paused", "removing", "restarting")


class PowerSwitch:
    """Kill and restart, pause and unpause the containers of a site."""

    def __init__(self, engine: Engine, targets: Targets, helper: Helper | None) -> None:
        self.engine = engine
        self.targets = targets
        self.helper = helper
        self._killed: dict[str, Target] = {}
        self._paused: dict[str, Target] = {}
        #: Restart policies of adopted containers, suspended while their power is off.
        self._policies: dict[str, dict[str, Any]] = {}

    # -- power loss ------------------------------------------------------------------------

    def power_off(self, containers: Sequence[Any]) -> FaultTiming:
        """SIGKILL every container at once (their disks and network endpoints stay)."""
        started = monotonic_ms()
        targets = self.targets.resolve(containers)
        for t in targets:  # recorded first: a failure halfway still powers them on
            self._killed[t.id] = t
        self._suspend_restart_policies(targets)
        if self.helper is not None:
            targets, reply = self.targets.call_agent(
                self.helper, KILL, containers, lambda ts: KillRequest(targets=wire(ts)), targets
            )
            names = {t.id: t.name for t in targets}
            offsets = reply.offsets(
                {names[cid]: ms for cid, ms in reply.result["killed"].items()}, started
            )
            method = "sigkill"
        else:
            offsets = {}

            def kill(t: Target) -> None:
                try:
                    self.engine.client.api.kill(t.id, signal="SIGKILL")
                except docker.errors.APIError as exc:
                    if "is not running" not in str(exc):
                        raise
                offsets[t.name] = monotonic_ms() - started

            parallel(kill, targets)
            method = "engine-kill"
        self.targets.forget(targets)
        return FaultTiming("kill", method, max(offsets.values()), offsets)

    def power_on(self, containers: Sequence[Any] | None = None) -> FaultTiming:
        """Start the killed containers again (default: all killed by this switch)."""
        started = monotonic_ms()
        if containers is None:
            chosen = list(self._killed.values())
        else:
            ids = [getattr(getattr(c, "container", c), "id", c) for c in containers]
            chosen = [t for cid, t in self._killed.items() if any(cid.startswith(i) for i in ids)]
        offsets: dict[str, float] = {}
        api = self.engine.client.api

        def start(t: Target) -> None:
            if _state(api, t.id) is None:
                offsets[t.name] = monotonic_ms() - started
                return  # removed meanwhile: nothing to power on
            state = wait_exited(api, t.id, EXIT_TIMEOUT)
            if state in RUNNING:
                raise FireError(
                    f"container {t.name} is still running {EXIT_TIMEOUT:.0f} s after its "
                    "power was cut: a process is stuck on frozen storage (thaw the pools "
                    "before powering on: undo storage before the kill)"
                )
            self.engine.retry(lambda: api.start(t.id))
            offsets[t.name] = monotonic_ms() - started
            self._resume_restart_policy(t)

        try:
            parallel(start, chosen)
        finally:
            for t in chosen:
                if t.name in offsets:
                    self._killed.pop(t.id, None)
            self.targets.forget(chosen)
        latency = max(offsets.values()) if offsets else 0.0
        return FaultTiming("kill", "start", latency, offsets)

    def wait_exited(self, containers: Sequence[Any]) -> None:
        """Wait (bounded) until every container of `containers` has exited."""
        api = self.engine.client.api
        ids = [container_id(c) for c in containers]

        def one(cid: str) -> None:
            wait_exited(api, cid, EXIT_TIMEOUT)

        parallel(one, ids)

    def _suspend_restart_policies(self, targets: Sequence[Target]) -> None:
        """An adopted container may have a restart policy (compose's `restart: always`):
        the engine would start it again at once, so it is set to "no" until power_on."""
        api = self.engine.client.api

        def one(t: Target) -> None:
            if not self.targets.is_adopted(t.id) or t.id in self._policies:
                return
            info = self.engine.retry(lambda: api.inspect_container(t.id))
            policy = dict((info.get("HostConfig") or {}).get("RestartPolicy") or {})
            if policy.get("Name") in (None, "", "no"):
                return
            self._policies[t.id] = policy  # recorded first: power_on puts it back
            self.engine.retry(lambda: api.update_container(t.id, restart_policy={"Name": "no"}))

        parallel(one, list(targets))

    def _resume_restart_policy(self, t: Target) -> None:
        policy = self._policies.pop(t.id, None)
        if policy is not None:
            self.engine.retry(
                lambda: self.engine.client.api.update_container(t.id, restart_policy=policy)
            )

    # -- pause -----------------------------------------------------------------------------

    def pause(self, containers: Sequence[Any]) -> FaultTiming:
        """Freeze every process of the containers (cgroup freezer), side by side."""
        started = monotonic_ms()
        targets = self.targets.resolve(containers)
        offsets: dict[str, float] = {}
        api = self.engine.client.api

        def one(t: Target) -> None:
            self._paused[t.id] = t
            try:
                self.engine.retry(lambda: api.pause(t.id))
            except docker.errors.APIError as exc:
                if "already paused" not in str(exc):
                    raise
            offsets[t.name] = monotonic_ms() - started

        parallel(one, targets)
        return FaultTiming("pause", "cgroup-freezer", max(offsets.values()), offsets)

    def unpause(self, containers: Sequence[Any] | None = None) -> FaultTiming:
        started = monotonic_ms()
        if containers is None:
            chosen = list(self._paused.values())
        else:
            ids = [getattr(getattr(c, "container", c), "id", c) for c in containers]
            chosen = [t for cid, t in self._paused.items() if any(cid.startswith(i) for i in ids)]
        offsets: dict[str, float] = {}
        api = self.engine.client.api

        def one(t: Target) -> None:
            try:
                self.engine.retry(lambda: api.unpause(t.id))
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if "not paused" not in str(exc):
                    raise
            self._paused.pop(t.id, None)
            offsets[t.name] = monotonic_ms() - started

        parallel(one, chosen)
        return FaultTiming("pause", "cgroup-freezer", max(offsets.values(), default=0.0), offsets)


def _state(api: Any, cid: str) -> str | None:
    try:
        return str(api.inspect_container(cid)["State"]["Status"])
    except docker.errors.NotFound:
        return None


def wait_exited(api: Any, cid: str, timeout: float) -> str | None:
    """Poll the engine until `cid` is no longer running; return its last status."""
    waiting = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.02),
        retry=retry_if_result(lambda status: status in RUNNING),
        retry_error_callback=lambda rs: rs.outcome.result() if rs.outcome else None,
    )
    result: str | None = waiting(_state, api, cid)
    return result


__all__ = ["EXIT_TIMEOUT", "PowerSwitch"]
