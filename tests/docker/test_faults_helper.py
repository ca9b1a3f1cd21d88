"""The helper's lifecycle on a real engine: dead-man switch, a helper killed mid-fire, and
the reaping of a SIGKILLed session's frozen pools."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from pytest_dcfire.faults.helper import Helper, thaw_dead_session
from pytest_dcfire.runtime.engine import L_ROLE, L_SESSION, Engine

pytestmark = pytest.mark.docker

#: A session that burns one container and freezes its pool, then waits to be SIGKILLed.
#: With `kill_agent`, it first kills its own agent, so that only a reaper can thaw.
OWNER = textwrap.dedent(
    """
    import json, sys, time
    from pytest_dcfire.faults.helper import Helper
    from pytest_dcfire.faults.network import NetworkCutter, Targets
    from pytest_dcfire.faults.storage import StoragePools
    from pytest_dcfire.runtime.engine import Engine, SessionIdentity

    image, kill_agent = sys.argv[1], sys.argv[2] == "1"
    engine = Engine.connect(SessionIdentity.new(worker="owner"))
    helper = Helper(engine, keep_system=True).start()  # undo only: the fixture removes it
    pools = StoragePools(engine, helper)
    pool = pools.create_pool("data", 32, "a")
    api = engine.client.api
    created = api.create_container(
        image,
        name=engine.session.name("victim"),
        labels=engine.session.labels("service", site="a", service="victim"),
        host_config=api.create_host_config(
            binds={pool.volume: {"bind": "/data", "mode": "rw"}}, init=True
        ),
        detach=True,
    )
    api.start(created["Id"])
    time.sleep(0.5)
    NetworkCutter(engine, Targets(engine), helper).cut([created["Id"]])
    pools.freeze([pool])
    agent_pid = helper.request("ping").result["pid"]
    if kill_agent:
        kill = f"import os; os.kill({agent_pid}, 9)"
        api.exec_start(api.exec_create(helper.container_id, ["python3", "-c", kill]))
    print(json.dumps({"session": engine.session.id, "victim": created["Id"],
                      "pool": pool.volume}), flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def owner(faults_echo_image: str, faults_engine: Engine, faults_helper: Helper) -> Iterator[Any]:
    """Start an owner process; after the test, remove whatever its session left."""
    started: list[dict[str, str]] = []

    def start(kill_agent: bool) -> dict[str, str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", OWNER, faults_echo_image, "1" if kill_agent else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info: dict[str, str] = json.loads(line)
        started.append(info)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return info

    yield start
    client = faults_engine.client
    for info in started:  # as the runtime's reaper does it: thaw first, then remove
        flt = {"label": f"{L_SESSION}={info['session']}"}
        with contextlib.suppress(Exception):
            thaw_dead_session(faults_helper, info["session"])
        for c in client.containers.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        for v in client.volumes.list(filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                v.remove(force=True)


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_dead_man_switch_undoes_everything_when_the_owner_is_killed(
    owner: Any, faults_engine: Engine, faults_probe: Any
) -> None:
    info = owner(kill_agent=False)
    victim = faults_engine.client.containers.get(info["victim"])
    # The engine closed the agent's stdin: the cut is gone and the pool is thawed.
    assert wait_for(lambda: faults_probe.write_and_sync(victim, "/data/x", "ok") == (0, "ok"))
    victim.reload()
    ip = victim.attrs["NetworkSettings"]["IPAddress"]
    assert faults_probe.echo_once(ip) == b"ping"


def test_reaper_thaws_and_detaches_a_dead_sessions_pools(
    owner: Any, faults_engine: Engine, faults_helper: Helper, faults_probe: Any
) -> None:
    info = owner(kill_agent=True)
    dead = info["session"]
    client = faults_engine.client
    victim = client.containers.get(info["victim"])
    # Nobody undid anything: the pool is still frozen, a write blocks.
    thread, box = faults_probe.in_thread(
        lambda: faults_probe.write_and_sync(victim, "/data/late", "ok")
    )
    thread.join(1.0)
    assert thread.is_alive()
    assert any(v["session"] == dead for v in faults_helper.status()["loops"].values())

    flt = {"label": f"{L_SESSION}={dead}"}
    containers = client.containers.list(all=True, filters=flt)
    done = thaw_dead_session(faults_helper, dead, containers)
    assert "thawed pool data" in done
    thread.join(10)
    assert box == [(0, "ok")]
    # What the runtime's reaper does next: services, then the helper, then volumes.
    containers.sort(key=lambda c: c.labels.get(L_ROLE) == "helper")
    for c in containers:
        started = time.monotonic()
        c.remove(force=True)
        assert time.monotonic() - started < 10
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)
    # The loop device went with its last user; nothing of that session is left.
    assert wait_for(
        lambda: not any(v["session"] == dead for v in faults_helper.status()["loops"].values())
    )
    assert client.containers.list(all=True, filters=flt) == []
    assert client.volumes.list(filters=flt) == []


def test_helper_killed_mid_fire_is_recreated_and_restore_works(
    faults: Any, faults_lab: Any, faults_helper: Helper, faults_probe: Any
) -> None:
    pool = faults.storage.create_pool(f"k{time.monotonic_ns() % 10**8}", 32, "a")
    victim = faults_lab.run("kvictim", "a", volumes={pool.volume: "/data"})
    peer = faults_lab.run("kpeer", "b")
    try:
        faults.network.cut([victim])
        faults.storage.freeze([pool])
        old = faults_helper.container_id
        assert old is not None
        faults_lab.client.api.kill(old)
        # The next request notices, starts a new helper, which adopts the journal: the pool
        # is still frozen and the network cut (gone with the old agent) is made again.
        status = faults_helper.status()
        assert faults_helper.container_id != old
        assert faults_helper.restarts >= 1
        assert victim.id in status["cuts"]
        assert status["pools"][pool.name]["frozen"] is True
        assert faults_probe.connect_from(peer, "kvictim") == "TimeoutError"
        faults.storage.thaw([pool])
        faults.network.restore()
        assert faults_probe.write_and_sync(victim, "/data/after", "ok") == (0, "ok")
        assert faults_probe.connect_from(peer, "kvictim") == "ok"
        # And the new helper burns as the old one did.
        faults.network.cut([victim])
        faults.storage.freeze([pool])
        thread, box = faults_probe.in_thread(
            lambda: faults_probe.write_and_sync(victim, "/data/again", "ok")
        )
        thread.join(1.0)
        assert thread.is_alive()
        assert faults_probe.connect_from(peer, "kvictim") == "TimeoutError"
        faults.storage.thaw([pool])
        faults.network.restore()
        thread.join(10)
        assert box == [(0, "ok")]
    finally:
        faults.storage.thaw([pool])
        victim.remove(force=True)
        faults.storage.destroy(pool)
