"""The writer system that the disk-fault and power-cut tests share, started once.

A stdlib writer service with a volume at two sites (`writer@east`, `writer@west`) and a
second one with a volume in east (`keeper`). One inner session runs the inner tests of both
files against it, the disk faults first; each outer test asserts on its own inner tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dcfire_inner import start_inner

#: A line protocol on port 7000: `S name data` writes and fsyncs (file and directory),
#: `U name data` writes without fsync, `A name data` appends without fsync, `R name` reads;
#: an OSError is answered `err <ERRNO NAME>`.
WRITER = (
    "import errno, os, socket, threading\n"
    "def op(line):\n"
    "    cmd, name, *rest = line.split(' ', 2)\n"
    "    path = '/data/' + name\n"
    "    try:\n"
    "        if cmd == 'R':\n"
    "            return open(path).read() if os.path.exists(path) else '<missing>'\n"
    "        with open(path, 'a' if cmd == 'A' else 'w') as f:\n"
    "            f.write(rest[0])\n"
    "            f.flush()\n"
    "            if cmd == 'S':\n"
    "                os.fsync(f.fileno())\n"
    "        if cmd == 'S':\n"
    "            d = os.open('/data', os.O_RDONLY); os.fsync(d); os.close(d)\n"
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

DISK_TESTS = """
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


POWER_TESTS = """

def write_then_burn(dcfire, dcfire_topology, mode):
    t = dcfire_topology
    assert ask(t, "writer@east", "S synced kept") == "ok"
    assert ask(t, "writer@east", "S grown base") == "ok"
    # Acknowledged, never fsynced, and no more than milliseconds before the power goes.
    assert ask(t, "writer@east", "U unsynced volatile") == "ok"
    assert ask(t, "writer@east", "A grown +tail") == "ok"
    with dcfire.fire("east", mode=mode) as fire:
        assert dcfire.burning == ("east",)
    print("VIA", mode, [(s.effect, s.method) for s in fire.record.steps])
    read = lambda name: dcfire.eventually(lambda: ask(t, "writer@east", "R " + name), timeout=30)
    return {name: read(name) for name in ("synced", "grown", "unsynced")}


def test_power_loss_loses_what_was_not_fsynced(dcfire, dcfire_topology):
    after = write_then_burn(dcfire, dcfire_topology, "power-loss")
    assert after["synced"] == "kept"
    assert after["grown"] == "base"  # the bytes appended after the fsync are gone
    assert after["unsynced"] in ("<missing>", "")  # never fsynced: gone


def test_crash_loses_nothing(dcfire, dcfire_topology):
    after = write_then_burn(dcfire, dcfire_topology, "crash")
    assert after == {"synced": "kept", "grown": "base+tail", "unsynced": "volatile"}
"""


def run_writer_session(path: Path) -> pytest.RunResult:
    """Both files' inner tests in one pytest subprocess (verbose, output shown, every
    outcome in the summary)."""
    started = time.monotonic()
    inner = start_inner(path, HELPERS + DISK_TESTS + POWER_TESTS, "-s", "-rA", topology=TOPOLOGY)
    code = inner.wait(timeout=540)
    lines = inner.output.splitlines()
    return pytest.RunResult(code, lines, [], time.monotonic() - started)


def assert_passed(result: pytest.RunResult, tests: str) -> None:
    """Every inner test defined in `tests` passed, setup and teardown included."""
    names = [line[4:].split("(")[0] for line in tests.splitlines() if line.startswith("def test_")]
    assert names, tests
    summary = set(result.outlines)
    for name in names:
        assert f"PASSED test_inner.py::{name}" in summary, (name, result.stdout.str())
        assert not any(line.startswith(f"ERROR test_inner.py::{name}") for line in summary), (
            name,
            result.stdout.str(),
        )
