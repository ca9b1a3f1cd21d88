"""Storage pools on a real engine: frozen I/O blocks, thaw releases it, nothing hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_dcfire.errors import FireError
from pytest_dcfire.faults.storage import Pool, StoragePools

pytestmark = pytest.mark.docker

#: Appends a numbered line to /data/log and fsyncs it, every 20 ms, forever.
WRITER = [
    "python3",
    "-c",
    "import os, time, sys\n"
    "i = 0\n"
    "f = open('/data/log', 'a')\n"
    "while True:\n"
    "    f.write(f'{i}\\n'); f.flush(); os.fsync(f.fileno()); i += 1\n"
    "    time.sleep(0.02)\n",
]


@pytest.fixture
def pools(faults: Any) -> Iterator[StoragePools]:
    storage: StoragePools = faults.storage
    yield storage


@pytest.fixture
def pooled(faults_lab: Any, pools: StoragePools) -> Iterator[tuple[Any, Pool]]:
    """An echo container whose /data is on a fresh pool; both removed after."""
    pool = pools.create_pool(f"p{time.monotonic_ns() % 10**8}", 32, "a")
    container = faults_lab.run("store", "a", volumes={pool.volume: "/data"})
    yield container, pool
    container.remove(force=True)
    pools.destroy(pool)


def test_write_on_a_frozen_pool_blocks_until_thaw(
    pooled: tuple[Any, Pool], pools: StoragePools, faults_probe: Any, faults_helper: Any
) -> None:
    container, pool = pooled
    assert pool.device.startswith("/dev/loop")
    # The engine mounted the helper's loop device for the container; the image's files
    # were copied in because the fresh filesystem is empty.
    assert container.exec_run(["cat", "/data/from-image"]).output == b"image-file\n"
    assert faults_probe.write_and_sync(container, "/data/before", "kept") == (0, "kept")

    timing = pools.freeze([pool])
    assert timing.method == "fsfreeze" and set(timing.offsets_ms) == {pool.name}
    thread, box = faults_probe.in_thread(
        lambda: faults_probe.write_and_sync(container, "/data/during", "late")
    )
    thread.join(1.5)
    assert thread.is_alive(), "a write + fsync on a frozen pool must block"
    # Reading still works while frozen; only writes wait.
    assert container.exec_run(["cat", "/data/before"]).output == b"kept"
    pools.thaw([pool])
    thread.join(20)
    assert box == [(0, "late")]
    assert container.exec_run(["cat", "/data/before", "/data/during"]).output == b"keptlate"
    # Thawing twice is harmless.
    pools.thaw([pool])


def test_engine_unmount_and_kill_never_hang_on_a_frozen_pool(
    faults: Any, faults_lab: Any, pools: StoragePools, faults_probe: Any
) -> None:
    """Worst case: storage frozen first, a writer blocked in the kernel, then power loss."""
    pool = pools.create_pool(f"p{time.monotonic_ns() % 10**8}", 32, "a")
    writer = faults_lab.run("writer", "a", volumes={pool.volume: "/data"}, command=WRITER)
    idle = faults_lab.run("idle", "a", volumes={pool.volume: "/data"})
    try:
        time.sleep(0.3)
        pools.freeze([pool])
        written = int(writer.exec_run(["wc", "-l", "/data/log"]).output.split()[0])
        assert written > 0

        # The engine stops a container on the frozen pool and unmounts the volume: instant.
        started = time.monotonic()
        idle.kill()
        idle.wait(timeout=10)
        assert time.monotonic() - started < 5

        # Power loss through the helper returns at once even though the writer is stuck.
        started = time.monotonic()
        timing = faults.power.power_off([writer])
        assert timing.method == "sigkill"
        assert time.monotonic() - started < 2
        # The engine keeps answering meanwhile.
        started = time.monotonic()
        faults_lab.client.api.inspect_container(writer.id)
        faults_lab.client.containers.list(filters={"id": writer.id})
        assert time.monotonic() - started < 2

        # Power on must wait for the thaw; thaw first, then power on: same disk, same data.
        pools.thaw([pool])
        faults.power.power_on([writer])
        writer.reload()
        assert writer.status == "running"
        lines = writer.exec_run(["cat", "/data/log"]).output.decode().split()
        assert [int(x) for x in lines[:written]] == list(range(written))
    finally:
        pools.thaw([pool])
        for c in (writer, idle):
            c.remove(force=True)
        pools.destroy(pool)


def test_partition_leaves_storage_writable(
    faults: Any, pooled: tuple[Any, Pool], faults_probe: Any
) -> None:
    container, _ = pooled
    faults.network.cut([container])
    try:
        started = time.monotonic()
        assert faults_probe.write_and_sync(container, "/data/p", "free") == (0, "free")
        assert time.monotonic() - started < 5
    finally:
        faults.network.restore()


def test_only_this_sessions_pools_can_be_frozen(
    pools: StoragePools, pooled: tuple[Any, Pool], faults_helper: Any
) -> None:
    _, pool = pooled
    impostor = Pool(pool.name + "x", pool.volume, "a", 32, pool.device)
    with pytest.raises(FireError, match="not a storage pool of session"):
        pools.freeze([impostor])
    foreign = StoragePools(pools.engine, faults_helper)  # knows no pools
    with pytest.raises(FireError, match="not a storage pool of session"):
        foreign.freeze([pool])


def test_destroy_leaves_no_loop_device_or_volume(
    pools: StoragePools, faults_helper: Any, faults_engine: Any
) -> None:
    pool = pools.create_pool(f"p{time.monotonic_ns() % 10**8}", 16, "b")
    loops = faults_helper.status()["loops"]
    assert any(v["pool"] == pool.name for v in loops.values())
    pools.freeze([pool])
    pools.destroy(pool)  # thaws first
    loops = faults_helper.status()["loops"]
    assert not any(v["pool"] == pool.name for v in loops.values())
    names = [v.name for v in faults_engine.client.volumes.list()]
    assert pool.volume not in names
    assert pool not in pools.pools()


def test_pool_volumes_give_each_instance_volume_its_own_pool(
    pools: StoragePools, faults_engine: Any
) -> None:
    from pytest_dcfire.faults.storage import PoolVolumes
    from pytest_dcfire.topology.model import Service, Volume

    provider = PoolVolumes(pools, sizes={"a": 16})
    db = Service(name="db@a", base="db", site="a")
    data = Volume("data", "/var/lib/data")
    name = provider.volume_for(db, data)
    assert provider.volume_for(db, data) == name  # made once
    assert name != provider.volume_for(db, Volume("logs", "/logs"))
    volume = faults_engine.client.volumes.get(name)
    assert volume.attrs["Options"]["type"] == "ext4"
    assert volume.attrs["Labels"]["io.github.pytest-dcfire.site"] == "a"
    assert {p.site for p in pools.pools(["a"])} == {"a"}
    provider.close()
    assert pools.pools() == []


def test_shutdown_returns_eio_and_comes_back_only_once_its_containers_exited(
    faults: Any, faults_lab: Any, pools: StoragePools, faults_probe: Any
) -> None:
    """A power loss's storage: EIO at once; no remount under a running container (a clear
    error, the pool stays shut down); after the kill it mounts again with the journal's
    state: the fsynced file whole, the unsynced one gone."""
    pool = pools.create_pool(f"p{time.monotonic_ns() % 10**8}", 32, "a")
    box = faults_lab.run("box", "a", volumes={pool.volume: "/data"})
    spare = pools.create_pool(f"q{time.monotonic_ns() % 10**8}", 32, "a")
    try:
        assert faults_probe.write_and_sync(box, "/data/synced", "kept") == (0, "kept")
        box.exec_run(["sh", "-c", "echo volatile > /data/unsynced"])
        timing = pools.shutdown([pool])
        assert timing.method == "ext4-shutdown" and set(timing.offsets_ms) == {pool.name}
        code, out = box.exec_run(["sh", "-c", "echo x > /data/after"])
        assert code != 0 and b"Input/output error" in out
        with pytest.raises(FireError, match="a container still mounts it"):
            pools.remount([pool])
        faults.power.power_off([box])
        faults.power.wait_exited([box])
        assert pools.remount([pool]).method == "remount"
        faults.power.power_on([box])
        assert box.exec_run(["cat", "/data/synced"]).output == b"kept"
        assert box.exec_run(["ls", "/data"]).output.split().count(b"unsynced") == 0
        assert faults_probe.write_and_sync(box, "/data/again", "ok") == (0, "ok")
        # A pool left shut down (a restore that never came) is still destroyed cleanly.
        pools.shutdown([spare])
    finally:
        box.remove(force=True)
        pools.destroy(pool)
        pools.destroy(spare)
