"""A power loss loses what was never fsynced; a crash loses nothing.

A small writer service keeps files on its site's pool and acknowledges each write, some
fsynced, some not. The unsynced ones are written right before the fire (the kernel flushes
dirty pages by itself only after seconds), so that after `power-loss` they must be gone,
and after `crash` (the kernel and its page cache live on) they must all be there.
"""

from __future__ import annotations

import pytest
from inner_session import run_inner

pytestmark = pytest.mark.docker

#: A line protocol on port 7000: `S name data` writes and fsyncs (file and directory),
#: `U name data` writes without fsync, `A name data` appends without fsync, `R name` reads.
WRITER = (
    "import os, socket, threading\n"
    "def op(line):\n"
    "    cmd, name, *rest = line.split(' ', 2)\n"
    "    path = '/data/' + name\n"
    "    if cmd == 'R':\n"
    "        return open(path).read() if os.path.exists(path) else '<missing>'\n"
    "    with open(path, 'a' if cmd == 'A' else 'w') as f:\n"
    "        f.write(rest[0])\n"
    "        f.flush()\n"
    "        if cmd == 'S':\n"
    "            os.fsync(f.fileno())\n"
    "            d = os.open('/data', os.O_RDONLY); os.fsync(d); os.close(d)\n"
    "    return 'ok'\n"
    "def serve(c):\n"
    "    with c, c.makefile('r') as lines:\n"
    "        for line in lines:\n"
    "            c.sendall((op(line.rstrip('\\n')) + '\\n').encode())\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(16)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)

TOPOLOGY = f"""
sites: [east, west]
services:
  writer:
    site: east
    image: debian:bookworm-slim
    command: ["python3", "-c", {WRITER!r}]
    ports: [7000]
    volumes: {{data: /data}}
    healthcheck: {{tcp: 7000, timeout: 30}}
"""

TESTS = """
import socket

import pytest


def ask(addr, line):
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall((line + "\\n").encode())
        return s.makefile("r").readline().rstrip("\\n")


def write_then_burn(dcfire, dcfire_topology, mode):
    writer = dcfire_topology.service("writer")
    addr = writer.direct_address(7000)
    assert ask(addr, "S synced kept") == "ok"
    assert ask(addr, "S grown base") == "ok"
    # Acknowledged, never fsynced, and no more than milliseconds before the power goes.
    assert ask(addr, "U unsynced volatile") == "ok"
    assert ask(addr, "A grown +tail") == "ok"
    with dcfire.fire("east", mode=mode) as fire:
        assert dcfire.burning == ("east",)
    print("VIA", mode, [(s.effect, s.method) for s in fire.record.steps])
    read = lambda name: dcfire.eventually(lambda: ask(addr, "R " + name), timeout=30)
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


def test_power_loss_loses_unsynced_writes_and_crash_keeps_them(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, TOPOLOGY, TESTS)
    out = result.stdout.str()
    assert "('storage', 'ext4-shutdown')" in out, out
    assert "('storage', 'fsfreeze')" in out, out  # crash freezes, as power-loss did before
    result.assert_outcomes(passed=2)
    assert "[power-loss]" in out and "[crash]" in out  # the fire table says which mode
