"""Disk faults on real pools: `fail` answers EIO and comes back with what was fsynced, `full`
answers ENOSPC and gives the space back, one instance's disk fails alone; and an
interrupted session (Ctrl-C, SIGKILL) leaves no shut-down pool and no filler behind.

One inner session (one small system for all its tests): a stdlib writer service with a
volume at two sites, and a second service with a volume in the same site.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import docker
import pytest
from dcfire_inner import assert_clean, service_containers, start_inner
from inner_session import run_inner

pytestmark = pytest.mark.docker

#: A line protocol on port 7000: `S name data` writes and fsyncs, `R name` reads; an OSError
#: is answered `err <ERRNO NAME>`.
WRITER = (
    "import errno, os, socket, threading\n"
    "def op(line):\n"
    "    cmd, name, *rest = line.split(' ', 2)\n"
    "    path = '/data/' + name\n"
    "    try:\n"
    "        if cmd == 'R':\n"
    "            return open(path).read() if os.path.exists(path) else '<missing>'\n"
    "        with open(path, 'w') as f:\n"
    "            f.write(rest[0])\n"
    "            f.flush()\n"
    "            os.fsync(f.fileno())\n"
    "        d = os.open('/data', os.O_RDONLY); os.fsync(d); os.close(d)\n"
    "        return 'ok'\n"
    "    except OSError as exc:\n"
    "        return 'err ' + errno.errorcode.get(exc.errno, str(exc.errno))\n"
    "def serve(c):\n"
    "    with c, c.makefile('r') as lines:\n"
    "        for line in lines:\n"
    "            c.sendall((op(line.rstrip('\\n')) + '\\n').encode())\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(16)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)

SERVICE = f"""
    image: debian:bookworm-slim
    command: ["python3", "-c", {WRITER!r}]
    ports: [7000]
    volumes: {{data: /data}}
    healthcheck: {{tcp: 7000, timeout: 30}}"""

TOPOLOGY = f"""
sites: [east, west]
services:
  writer:
    site: [east, west]{SERVICE}
  keeper:
    site: east{SERVICE}
"""

HELPERS = """
import os, socket

import pytest

from pytest_dcfire import disk

BIG = "x" * 20000


def ask(topology, name, line, timeout=10):
    addr = topology.service(name).direct_address(7000)
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall((line + "\\n").encode())
        return s.makefile("r").readline().rstrip("\\n")


def free_bytes(topology, name):
    code, out = topology.service(name).exec(
        ["python3", "-c", "import os; s = os.statvfs('/data'); print(s.f_bavail * s.f_frsize)"]
    )
    assert code == 0, out
    return int(out)


def has_filler(topology, name):
    code, out = topology.service(name).exec(["ls", "-a", "/data"])
    assert code == 0, out
    return ".dcfire-filler" in out.split()
"""

TESTS = """
def test_fail_answers_eio_and_the_lift_keeps_what_was_fsynced(dcfire, dcfire_topology):
    t = dcfire_topology
    assert ask(t, "writer@east", "S kept durable") == "ok"
    fault = dcfire.disk("writer@east", "fail")
    print("DISK fail", fault.via, f"{fault.setup_ms:.0f} ms")
    assert fault.kind == "disk" and fault.active
    # The same process, still running: every write and read on its volume fails.
    assert ask(t, "writer@east", "S during lost") == "err EIO"
    assert ask(t, "writer@east", "R kept") == "err EIO"
    # The other instance of the service and the other service of the site are untouched.
    assert ask(t, "writer@west", "S probe west") == "ok"
    assert ask(t, "keeper", "S probe east") == "ok"
    fault.lift()
    assert not fault.active
    # Lifted: the pool mounted again, the container restarted and healthy, the data there.
    assert ask(t, "writer@east", "R kept") == "durable"
    assert ask(t, "writer@east", "S after fine") == "ok"
    assert ask(t, "writer@east", "R after") == "fine"


def test_full_answers_enospc_and_gives_the_space_back(dcfire, dcfire_topology):
    t = dcfire_topology
    assert ask(t, "keeper", "S small kept") == "ok"
    before = free_bytes(t, "keeper")
    with dcfire.disk("east", "full") as fault:
        print("DISK full", fault.via, f"{fault.setup_ms:.0f} ms")
        for name in ("keeper", "writer@east"):  # the whole site
            assert ask(t, name, "S new " + BIG) == "err ENOSPC", name
            assert free_bytes(t, name) < 4096
            assert has_filler(t, name)
        assert ask(t, "keeper", "R small") == "kept"  # reads work
        assert ask(t, "writer@west", "S new " + BIG) == "ok"  # another site: not full
    assert free_bytes(t, "keeper") >= before - 65536
    assert not has_filler(t, "keeper")
    assert ask(t, "keeper", "S new " + BIG) == "ok"


@disk("writer@west", "full")
def test_the_marker(dcfire, dcfire_topology):
    assert [(f.kind, f.target, f.detail) for f in dcfire.link_faults] == [
        ("disk", "writer@west", "full")
    ]
    assert ask(dcfire_topology, "writer@west", "S marked " + BIG) == "err ENOSPC"
    assert ask(dcfire_topology, "writer@east", "S marked " + BIG) == "ok"


def test_a_fire_that_fails_the_disks(dcfire, dcfire_topology):
    t = dcfire_topology
    assert ask(t, "writer@west", "S fire survives") == "ok"
    with dcfire.fire("west", storage="fail") as fire:
        code, out = t.service("writer@west").exec(
            ["python3", "-c", "open('/data/burning', 'w').write('x')"]
        )
        assert code != 0 and "Input/output error" in out, out
    print("FIRE", fire.record.methods)
    assert "ext4-shutdown" in fire.record.methods
    assert ask(t, "writer@west", "R fire") == "survives"


def test_freeze_blocks_until_lifted(dcfire, dcfire_topology):
    t = dcfire_topology
    with dcfire.disk("keeper", "freeze") as fault:
        with pytest.raises(TimeoutError):  # the write and fsync wait for the thaw
            ask(t, "keeper", "S frozen waited", timeout=2)
        assert ask(t, "writer@east", "S probe thawed") == "ok"  # the rest of the site runs
    assert fault.via == "storage: fsfreeze"
    assert dcfire.eventually(lambda: ask(t, "keeper", "R frozen") == "waited", timeout=10)


def test_restore_lifts_a_fault_nobody_lifted(dcfire, dcfire_topology):
    dcfire.disk("keeper", "fail")
    dcfire.disk("writer@west", "full")
    assert ask(dcfire_topology, "keeper", "R small") == "err EIO"
    dcfire.restore()
    assert ask(dcfire_topology, "keeper", "R small") == "kept"
    assert ask(dcfire_topology, "writer@west", "S new " + BIG) == "ok"
    assert not has_filler(dcfire_topology, "writer@west")


def test_two_kinds_on_one_pool_are_refused(dcfire, dcfire_topology):
    from pytest_dcfire import FireError

    with dcfire.disk("keeper", "full"):
        with pytest.raises(FireError, match="already has a 'full' fault; lift it first"):
            dcfire.disk("east", "fail")
"""


def test_disk_faults(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, HELPERS + TESTS)
    out = result.stdout.str()
    result.assert_outcomes(passed=7)
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
