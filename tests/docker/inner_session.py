"""What the end-to-end Docker tests share: an echo service and a way to run an inner session.

Each of those tests writes a topology and a test file into a pytester directory and runs
pytest on them in a subprocess, the way a user's run would go.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import textwrap
from typing import Any

import docker.errors
import pytest

#: A threaded TCP echo server on port 7000, run with `python3 -c` in debian:bookworm-slim.
ECHO = (
    "import socket, threading\n"
    "def serve(c):\n"
    "    while (d := c.recv(65536)):\n"
    "        c.sendall(d)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(64)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)


def echo_topology(volumes: bool = True) -> str:
    """Two sites, one echo instance each (`echo@east`, `echo@west`), data on the site's
    pool unless `volumes=False`: the smallest system that burns."""
    data = "\n    volumes: {data: /data}" if volumes else ""
    return f"""
sites: [east, west]
services:
  echo:
    site: [east, west]
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]{data}
    healthcheck: {{tcp: 7000, timeout: 30}}
"""


#: Prepended to inner test files: talk to an echo service, tell whether it is dark.
ECHO_HELPERS = '''
import os, socket

import pytest

from pytest_dcfire import dc_fire


def echo_once(addr, payload=b"ping", timeout=2.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(100)


def is_dark(handle):
    """A new connection to the service times out (or hangs without an answer)."""
    try:
        return echo_once(handle.direct_address(7000), timeout=1.0) != b"ping"
    except TimeoutError:
        return True
'''


def run_inner(
    pytester: pytest.Pytester,
    topology: str,
    tests: str,
    *args: str,
    ini: str = "",
    conftest: str = "",
) -> pytest.RunResult:
    """Run `tests` against `topology` in a pytest subprocess (verbose, output shown)."""
    (pytester.path / "topology.yml").write_text(textwrap.dedent(topology))
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n" + ini
    )
    if conftest:
        pytester.makeconftest(textwrap.dedent(conftest))
    pytester.makepyfile(test_inner=textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-s", *args, timeout=300)


def build_test_image(client: Any, name: str, files: dict[str, bytes]) -> str:
    """Build an image from in-memory files once: its tag is `name:<hash of the files>`."""
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items())))
    tag = f"{name}:{digest.hexdigest()[:12]}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    for chunk in client.api.build(
        fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True
    ):
        if "error" in chunk:
            pytest.fail(f"building {name} failed: {chunk['error']}")
    return tag
