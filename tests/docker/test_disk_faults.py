"""Disk faults on real pools: `fail` answers EIO and comes back with what was fsynced, `full`
answers ENOSPC and gives the space back, one instance's disk fails alone; and an
interrupted session (Ctrl-C, SIGKILL) leaves no shut-down pool and no filler behind.

One inner session (one small system for all its tests, shared with test_power_cut.py: see
writer_session.py, where the inner tests are): a stdlib writer service with a volume at two
sites, and a second service with a volume in the same site.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean, service_containers, start_inner
from writer_session import DISK_TESTS, assert_passed

pytestmark = pytest.mark.docker


def test_disk_faults(writer_session: pytest.RunResult) -> None:
    result = writer_session
    out = result.stdout.str()
    assert_passed(result, DISK_TESTS)
    assert "DISK fail storage: ext4-shutdown" in out, out
    assert "DISK full storage: filler" in out, out
    # The terminal's fault table shows each disk fault: kind, target, what, via.
    assert any(
        "disk" in line and "writer@east" in line and "ext4-shutdown" in line
        for line in out.splitlines()
    ), out
    assert "[fire] (network=True, storage=fail)" in out, out


# -- interruptions ----------------------------------------------------------------------------

#: `fail` on east's pool and `full` on west's, then wait to be interrupted.
INTERRUPTED = """
import os, pathlib, time

def test_disks_broken(dcfire, dcfire_topology):
    dcfire.disk("echo@east", "fail")
    dcfire.disk("echo@west", "full")
    pathlib.Path(os.environ["DCFIRE_MARK"]).write_text(dcfire_topology.session_id)
    time.sleep(90)
"""


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    c = docker.from_env()
    yield c
    c.close()


def by_site(client: docker.DockerClient, session: str) -> dict[str, object]:
    return {
        c.labels.get("io.github.pytest-dcfire.site"): c for c in service_containers(client, session)
    }


def shut_down_pools(client: docker.DockerClient, session: str) -> list[str]:
    """The helper's pool mounts whose superblock says `shutdown` (EIO on every I/O)."""
    flt = {"label": [f"io.github.pytest-dcfire.session={session}"]}
    helpers = [
        c
        for c in client.containers.list(filters=flt, ignore_removed=True)
        if c.labels.get("io.github.pytest-dcfire.role") == "helper"
    ]
    if not helpers:
        return []
    code, out = helpers[0].exec_run(["cat", "/proc/self/mountinfo"])
    assert code == 0, out
    lines = out.decode().splitlines()
    return [line for line in lines if "/dcfire/mnt/" in line and "shutdown" in line]


def try_write(container: object, path: str) -> tuple[int, str]:
    """Write and fsync a file of 20 kB in the container (bounded: a stuck pool fails it)."""
    box: list[tuple[int, str]] = []
    script = (
        f"f = open({path!r}, 'w'); f.write('x' * 20000); f.flush(); import os; os.fsync(f.fileno())"
    )

    def run() -> None:
        code, out = container.exec_run(["python3", "-c", script])  # type: ignore[attr-defined]
        box.append((code, out.decode(errors="replace")))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    return box[0] if box else (-1, "blocked")


def test_ctrl_c_during_disk_faults_undoes_them(client: docker.DockerClient, tmp_path: Path) -> None:
    inner = start_inner(tmp_path, INTERRUPTED)
    session = inner.wait_mark()
    broken = by_site(client, session)
    assert "Input/output error" in try_write(broken["east"], "/data/probe")[1]
    assert "No space left" in try_write(broken["west"], "/data/probe")[1]
    inner.signal(signal.SIGINT)
    assert inner.wait() == pytest.ExitCode.INTERRUPTED, inner.output
    assert "Traceback" not in inner.output
    assert_clean(client, session, inner.output)


def test_sigkill_during_disk_faults_undoes_them(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    inner = start_inner(tmp_path / "killed", INTERRUPTED)
    session = inner.wait_mark()
    broken = by_site(client, session)
    assert "No space left" in try_write(broken["west"], "/data/probe")[1]
    assert len(shut_down_pools(client, session)) == 1  # east's, failed
    inner.signal(signal.SIGKILL)
    inner.wait()
    # The dead-man switch removed the filler at once, and stopped the container on the failed
    # pool so that it could mount it again (unless a session on this host reaped it all first).
    containers = by_site(client, session)
    if "west" in containers:
        for _ in range(100):
            code, out = try_write(containers["west"], "/data/after")
            if code == 0 or "No such container" in out:
                break
            threading.Event().wait(0.1)
        assert code == 0, out
    if "east" in containers:
        east = containers["east"]
        for _ in range(100):
            east.reload()  # type: ignore[attr-defined]
            if east.status != "running":  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.1)
        assert east.status == "exited", east.status  # type: ignore[attr-defined]
        assert shut_down_pools(client, session) == [], "a failed pool is still shut down"
    successor = start_inner(tmp_path / "next", "def test_up(dcfire_topology):\n    pass\n")
    assert successor.wait() == pytest.ExitCode.OK, successor.output
    # Nothing of the killed session is left: no container, no shut-down pool, no loop device.
    assert_clean(client, session, successor.output)
