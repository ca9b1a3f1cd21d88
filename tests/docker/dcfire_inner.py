"""Inner pytest sessions run as real subprocesses, and what they leave behind on the engine.

Used by the interruption, soak and xdist tests: they start a user's pytest run on a tiny
topology, signal it, and then ask the engine (and the host's loop devices and netns) whether
anything of that session is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from inner_session import echo_topology

from pytest_dcfire.runtime.engine import L_HOST, L_PID, L_ROLE, L_SESSION

#: Two sites, one echo instance each, data on the site's pool: the smallest thing that burns.
TOPOLOGY = echo_topology()


@dataclass
class Inner:
    """One inner pytest run in `path`; `mark` is a file the inner test writes when it burns."""

    path: Path
    proc: subprocess.Popen[bytes]
    log: Path
    mark: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_mark(self, timeout: float = 180.0) -> str:
        """Wait for the inner test to write its mark (the session id); return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.mark.exists() and self.mark.read_text().strip():
                return self.mark.read_text().strip()
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"inner run ended early ({self.proc.returncode}):\n{self.output}"
                )
            time.sleep(0.05)
        raise AssertionError(f"the inner test never burned:\n{self.output}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(
                f"inner run did not end within {timeout} s:\n{self.output}"
            ) from None


def start_inner(
    path: Path,
    tests: str,
    *args: str,
    conftest: str = "",
    ini: str = "",
    topology: str = TOPOLOGY,
    env: dict[str, str] | None = None,
) -> Inner:
    """Write the topology, ini and tests into `path` and start pytest there (not waiting)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "topology.yml").write_text(textwrap.dedent(topology))
    (path / "pytest.ini").write_text(
        "[pytest]\ndcfire_topology = topology.yml\ndcfire_recovery_timeout = 20\n" + ini
    )
    if conftest:
        (path / "conftest.py").write_text(textwrap.dedent(conftest))
    (path / "test_inner.py").write_text(textwrap.dedent(tests))
    mark = path / "burning.mark"
    log = path / "inner.log"
    environment = {**os.environ, "DCFIRE_MARK": str(mark), **(env or {})}
    # The plugin under test, wherever this test suite imports it from.
    import pytest_dcfire

    root = str(Path(pytest_dcfire.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, environment.get("PYTHONPATH", "")) if p
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args],
            cwd=path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # our signals only, not the outer run's Ctrl-C
        )
    return Inner(path, proc, log, mark)


def session_of_pid(client: docker.DockerClient, pid: int, timeout: float = 180.0) -> str:
    """The session id of the first object the process `pid` created on the engine."""
    flt = {"label": [f"{L_PID}={pid}", f"{L_HOST}={socket.gethostname()}"]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for kind in (client.containers.list, client.volumes.list, client.networks.list):
            kwargs: dict[str, Any] = {"filters": flt}
            if kind == client.containers.list:
                kwargs["all"] = True
                kwargs["ignore_removed"] = True
            for obj in kind(**kwargs):
                labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
                if labels.get(L_SESSION):
                    return str(labels[L_SESSION])
        time.sleep(0.05)
    raise AssertionError(f"process {pid} created nothing on the engine in {timeout} s")


def service_containers(client: docker.DockerClient, session: str) -> list[Any]:
    flt = {"label": [f"{L_SESSION}={session}", "io.github.pytest-dcfire.role=service"]}
    return list(client.containers.list(all=True, filters=flt, ignore_removed=True))


def loop_devices(session: str) -> list[str]:
    """Loop devices whose backing file is on `session`'s state volume."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            text = backing.read_text().strip()
        except OSError:
            continue
        if f"/{session}/" in text or f"{session}-state" in text:
            found.append(f"{backing.parent.parent.name}: {text}")
    return found


def nft_tables(pid: int) -> str:
    """`nft list tables` in the network namespace of `pid` (empty if it is gone)."""
    proc = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "nft", "list", "tables"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return proc.stdout


def cut_tables_anywhere(client: docker.DockerClient, session: str) -> list[str]:
    """Running containers on the engine whose netns still holds `session`'s nft table."""
    found = []
    for container in client.containers.list(ignore_removed=True):
        pid = int(container.attrs["State"].get("Pid") or 0)
        if pid > 0 and f"dcfire_{session}" in nft_tables(pid):
            found.append(container.name)
    return found


def leftovers(client: docker.DockerClient, session: str) -> dict[str, list[str]]:
    """Everything of `session` still on the engine and the host; empty lists when clean."""
    flt = {"label": f"{L_SESSION}={session}"}
    return {
        "containers": [
            c.name for c in client.containers.list(all=True, filters=flt, ignore_removed=True)
        ],
        "networks": [n.name for n in client.networks.list(filters=flt)],
        "volumes": [v.name for v in client.volumes.list(filters=flt)],
        "loop devices": loop_devices(session),
        "nft tables": cut_tables_anywhere(client, session),
    }


def assert_clean(client: docker.DockerClient, session: str, output: str = "") -> None:
    left = leftovers(client, session)
    assert not any(left.values()), f"session {session} left {left}\n{output}"


def wait_clean(
    client: docker.DockerClient, session: str, output: str = "", timeout: float = 30.0
) -> float:
    """Poll until nothing of `session` is left; the seconds it took. Fails with what is left
    after `timeout`."""
    started = time.monotonic()
    while True:
        left = leftovers(client, session)
        if not any(left.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"session {session} left {left} after {timeout:.0f} s\n{output}")
        time.sleep(0.2)


def janitors_created(client: docker.DockerClient, session: str, since: float) -> int:
    """How many janitor containers of `session` the engine created since `since` (epoch s):
    proof that the killed session's own helper removed it, not some other session."""
    flt = {
        "type": "container",
        "event": "create",
        "label": [f"{L_SESSION}={session}", f"{L_ROLE}=janitor"],
    }
    events = client.events(since=int(since) - 1, until=int(time.time()) + 1, filters=flt)
    try:
        return sum(1 for _ in events)
    finally:
        events.close()


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
