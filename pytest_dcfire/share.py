"""`dcfire_share = session`: one copy of the system under test for every pytest-xdist worker.

xdist workers end at different times (one that runs out of tests finishes its session while
others still run), so no worker can own a shared copy. The xdist *controller* lives for the
whole run: in share mode it starts the system eagerly (when the first worker is configured,
before any test), tears it down at its own session end like any session, and hands every
worker a plain-data description through `workerinput` (`describe`).

A worker *attaches* (`lifecycle.attach`): handles for the controller's containers,
nothing created. It still runs its own helper container (its own agent, so its dead-man
switch undoes its cuts and thaws what it froze if the worker dies), which accepts the shared
session's labelled containers and mounts the shared pools to freeze them (the agent checks
the owner's tag on each loop device). Links go to the controller's Toxiproxy API in url
mode, on the proxies it made. A worker never removes or re-creates anything of the shared
copy; its helper carries the `shared` label, so the controller reaps a worker that died.

Fires are serialised with `FireLock`, a readers-writer lock on a file in a directory the
controller made: a test that can burn (it uses `dcfire`, or has a fault marker) holds it
exclusive from setup to teardown (restore and health wait included); a test that only uses
`dcfire_topology` holds it shared, so it never runs while another worker's site burns.

A session burn (`--dcfire-burn`) is ignited once per set of containers, by their owner: the
controller burns the shared copy, and the adopted compose containers that every per-worker
copy sees (`start_adopted`, `BURN_KEY`), before any worker runs, and restores them in its
`pytest_sessionfinish`, after the last worker ended, where a failed health wait becomes an
error of the run. Workers hold those (`burn.hold_suite_burn`, `hold_controller_burn`) and burn
only their own copy: no process waits for health while another holds a cut of the same
containers.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dcfire.burn import OPTION as BURN_OPTION
from pytest_dcfire.errors import DcfireError

if TYPE_CHECKING:
    from pytest_dcfire.session import DcfireSession

#: `workerinput` keys: the description of the shared copy, and the fire lock's path.
SHARED_KEY = "dcfire_shared"
LOCK_KEY = "dcfire_lock"
#: `workerinput` key: the controller's session burn of the adopted containers (per-worker).
BURN_KEY = "dcfire_burn_held"
#: The JUnit property (and `item.user_properties` entry) with the seconds a test waited.
LOCK_WAIT_PROPERTY = "dcfire_lock_wait_s"
EXCLUSIVE_FIXTURES = ("dcfire",)
SHARED_FIXTURES = ("dcfire_topology",)


# -- the description (controller) and the attachment (worker) ----------------------------


def describe(state: DcfireSession) -> dict[str, Any]:
    """Everything a worker needs to act on the running shared copy, as plain data."""
    runtime = state.runtime
    assert runtime is not None, "the shared copy is not running"
    system, faults, links = runtime.system, runtime.faults, runtime.links
    pools = faults.pools.pools() if faults.pools is not None else []
    return {
        "identity": system.owner.to_dict(),
        "network": system.network.name,
        "subnet": str(system.subnet),
        "members": {
            h.name: [h.container.id, h.ip] for h in system.services.values() if not h.adopted
        },
        "pools": [dataclasses.asdict(p) for p in pools],
        "links": links.describe(system.topology) if links is not None else None,
        "burn": list(state.burn.burning()),
        "burn_since": state.burn.since,
        "burn_members": list(state.burn.members),
        "started_s": round(system.start_seconds, 3),
    }


def describe_burn(state: DcfireSession) -> dict[str, Any]:
    """What a worker needs to hold the controller's burn of the adopted containers."""
    burn = state.burn
    assert state.system is not None
    handles = [h for site in burn.sites for h in state.system.in_site(site)]
    return {
        "sites": list(burn.sites),
        "containers": [h.container.id for h in handles],
        "since": burn.since,
        "members": list(burn.members),
    }


def hold_controller_burn(state: DcfireSession, described: dict[str, Any]) -> None:
    """In a worker with its own copy: the controller burns the adopted containers; this
    worker burns only its own containers and holds (never cuts nor waits for) the rest."""
    if described.get("failure"):
        state.refuse(str(described["failure"]))
        return
    state.burn.held = frozenset(str(c) for c in described.get("containers") or ())
    state.burn.since = described.get("since")
    state.burn.members = list(described.get("members") or ())


# -- the lock -------------------------------------------------------------------------------


class FireLock:
    """A readers-writer lock shared by processes: `flock` on `path`, behind a turnstile
    (`path.gate`) so that a waiting writer is not starved by a stream of readers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.gate = self.path.with_name(self.path.name + ".gate")
        self._fd: int | None = None

    def acquire(self, exclusive: bool) -> float:
        """Block until held; return the seconds waited."""
        if self._fd is not None:
            raise RuntimeError("FireLock is held already")
        started = time.monotonic()
        gate = os.open(self.gate, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
        finally:
            os.close(gate)  # closing drops the turnstile
        self._fd = fd
        return time.monotonic() - started

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_mode(item: pytest.Item) -> str | None:
    """`exclusive` for a test that can burn, `shared` for one that only uses the system.

    A test with a fault marker asks for `dcfire` (the plugin adds it at collection)."""
    names = set(getattr(item, "fixturenames", ()))
    if names & set(EXCLUSIVE_FIXTURES):
        return "exclusive"
    if names & set(SHARED_FIXTURES):
        return "shared"
    return None


class WorkerLock:
    """Registered in an xdist worker that got a lock path from its controller."""

    def __init__(self, lock: FireLock) -> None:
        self.lock = lock
        self.waited = 0.0

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        mode = lock_mode(item)
        if mode is None:
            return (yield)
        waited = self.lock.acquire(mode == "exclusive")
        self.waited += waited
        item.user_properties.append((LOCK_WAIT_PROPERTY, round(waited, 3)))
        try:
            return (yield)
        finally:
            self.lock.release()


class ShareController:
    """Registered in the xdist controller (only when pytest-xdist is loaded): owns the shared
    copy under `dcfire_share = session`, and the lock directory."""

    def __init__(self, config: pytest.Config, state: DcfireSession) -> None:
        self.config = config
        self.state = state
        self.lockdir: str | None = None
        self._described: dict[str, Any] | None = None
        self._burn: dict[str, Any] | None = None

    def _needs_lock(self) -> bool:
        # Adopted compose containers are the same in every worker's copy: their fires must
        # be serialised even when each worker owns its own copy of the rest.
        return self.state.topology is not None and (
            self.state.settings.share == "session" or self.state.compose is not None
        )

    def _serving(self) -> bool:
        option = self.config.option
        return (
            self.state.settings.share == "session"
            and self.state.topology is not None
            and not option.dcfire_plan
            and not option.collectonly
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self._needs_lock():
            if self.lockdir is None:
                self.lockdir = tempfile.mkdtemp(prefix="pytest-dcfire-lock-")
            node.workerinput[LOCK_KEY] = str(Path(self.lockdir) / "fires.lock")
        if self._serving():
            node.workerinput[SHARED_KEY] = self.described()
        elif self._burning_adopted():
            node.workerinput[BURN_KEY] = self.burn_described()

    def _burning_adopted(self) -> bool:
        """Per-worker copies with an adopted compose project under a session burn: the
        adopted containers are the same in every worker, so the controller burns them."""
        option = self.config.option
        return (
            bool(self.state.burn)
            and self.state.compose is not None
            and self.state.settings.share != "session"
            and not option.dcfire_plan
            and not option.collectonly
        )

    def burn_described(self) -> dict[str, Any]:
        """Burn the adopted containers once (before any worker runs a test) and describe it."""
        if self._burn is None:
            try:
                self.state.start_adopted()
                self._burn = describe_burn(self.state)
            except DcfireError as exc:
                self._burn = {"failure": str(exc)}
        return self._burn

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """After the last worker ended: restore the session burn once, wait for health, and
        make a failed recovery fail the run (an error of its own in the report and JUnit)."""
        burn = self.state.burn
        if burn.controller is None:
            return
        failed = burn.restore_quietly()
        if failed is None:
            return
        what = f"{BURN_OPTION} {','.join(burn.sites)}"
        report = pytest.TestReport(
            nodeid=f"dcfire {what}",
            location=("dcfire", None, what),
            keywords={},
            outcome="failed",
            longrepr=f"dcfire: {failed}",
            when="teardown",
        )
        self.config.hook.pytest_runtest_logreport(report=report)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def described(self) -> dict[str, Any]:
        """Start the shared copy once (eagerly: the controller cannot know which tests need
        it), and describe it; a start-up failure is described too, for every worker to say."""
        if self._described is None:
            try:
                self.state.serving = True
                self.state.start()
                self._described = describe(self.state)
            except DcfireError as exc:
                self._described = {"failure": str(exc)}
        return self._described

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.lockdir is not None:
            shutil.rmtree(self.lockdir, ignore_errors=True)
            self.lockdir = None


def configure_worker(config: pytest.Config, state: DcfireSession) -> None:
    """In an xdist worker: take the lock and the shared copy the controller handed over."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    lock = workerinput.get(LOCK_KEY)
    if lock:
        config.pluginmanager.register(WorkerLock(FireLock(lock)), "dcfire-share-lock")
    held = workerinput.get(BURN_KEY)
    if held is not None:
        hold_controller_burn(state, held)
    described = workerinput.get(SHARED_KEY)
    if described is not None:
        state.share(described)
        integrity = config.pluginmanager.get_plugin("dcfire-integrity")
        if integrity is not None and lock:  # a copy one worker breaks is broken for all
            integrity.shared = Path(lock).with_name("broken")


def is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput")


__all__ = [
    "LOCK_WAIT_PROPERTY",
    "FireLock",
    "ShareController",
    "WorkerLock",
    "configure_worker",
    "describe",
    "hold_controller_burn",
    "lock_mode",
]
