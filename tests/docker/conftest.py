"""Fixtures for the fault machinery tests (tests/docker/test_faults_*.py).

Everything here is created for one test session (its own `SessionIdentity` and labels),
tracked by id and removed by id at the end; nothing else on the engine is touched.
Fixture names start with `faults_` so that other test modules are not affected; one more,
`writer_session`, is the inner session that test_disk_faults.py and test_power_cut.py share.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import pytest
from inner_session import build_test_image
from writer_session import run_writer_session

from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.faults.network import NetworkCutter, Targets
from pytest_dcfire.faults.peers import PeerCutter
from pytest_dcfire.faults.power import PowerSwitch
from pytest_dcfire.faults.storage import StoragePools
from pytest_dcfire.runtime.engine import Engine, SessionIdentity

BASE = "debian:bookworm-slim"
ECHO_PORT = 7000

#: A threaded TCP echo server; /data is where a pool volume gets mounted.
ECHO_SERVER = """\
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7000))
srv.listen(64)
def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

ECHO_DOCKERFILE = f"""\
FROM {BASE}
COPY echo.py /echo.py
RUN mkdir -p /data && echo image-file > /data/from-image
LABEL io.github.pytest-dcfire.build="test-echo"
CMD ["python3", "/echo.py"]
"""


@pytest.fixture(scope="session")
def faults_engine() -> Iterator[Engine]:
    try:
        engine = Engine.connect(SessionIdentity.new(worker="faults-tests"))
    except Exception as exc:
        pytest.fail(f"these tests need a Docker engine: {exc}")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def faults_echo_image(faults_engine: Engine) -> str:
    """A tiny TCP echo service, built once (tag depends on its recipe)."""
    files = {"Dockerfile": ECHO_DOCKERFILE.encode(), "echo.py": ECHO_SERVER.encode()}
    tag: str = build_test_image(faults_engine.client, "pytest-dcfire-test-echo", files)
    return tag


@pytest.fixture(scope="session")
def faults_helper(faults_engine: Engine) -> Iterator[Helper]:
    helper = Helper(faults_engine).start()
    yield helper
    helper.close()


class Lab:
    """Containers and a network of one test session, all labelled, all removed after."""

    def __init__(self, engine: Engine, image: str) -> None:
        self.engine = engine
        self.image = image
        self.client = engine.client
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.network = self._network()

    def _network(self) -> Any:
        """A bridge with a configured /24 (as the runtime makes them), on a free subnet."""
        taken = [
            ipaddress.ip_network(cfg["Subnet"], strict=False)
            for net in self.client.networks.list()
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
            if "Subnet" in cfg
        ]
        candidates = list(ipaddress.IPv4Network("10.217.0.0/16").subnets(new_prefix=24))
        random.shuffle(candidates)
        for subnet in candidates:
            if any(subnet.overlaps(t) for t in taken if t.version == 4):
                continue
            pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
            try:
                return self.client.networks.create(
                    self.engine.session.name("net", str(time.monotonic_ns() % 10**6)),
                    driver="bridge",
                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                    labels=self.engine.session.labels("network"),
                )
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc).lower():
                    raise
        raise AssertionError("no free subnet for the test network")

    def run(
        self,
        name: str,
        site: str,
        volumes: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> Any:
        """Start an echo container named `name` (also its DNS alias) in `site`."""
        api = self.client.api
        binds = {v: {"bind": path, "mode": "rw"} for v, path in (volumes or {}).items()}
        networking = api.create_networking_config(
            {self.network.name: api.create_endpoint_config(aliases=[name])}
        )
        created = api.create_container(
            self.image,
            command=command,
            name=self.engine.session.name(name, str(time.monotonic_ns() % 10**6)),
            labels=(
                labels
                if labels is not None
                else self.engine.session.labels("service", site=site, service=name)
            ),
            host_config=api.create_host_config(binds=binds or None, init=True),
            networking_config=networking,
            detach=True,
        )
        self.containers.append(created["Id"])
        api.start(created["Id"])
        container = self.client.containers.get(created["Id"])
        if command is None:  # the echo server
            Probe.wait_listening(container)
        return container

    def ip(self, container: Any) -> str:
        container.reload()
        return str(container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"])

    def close(self) -> None:
        for cid in reversed(self.containers):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(cid, force=True)
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_volume(name, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.network.remove()


@pytest.fixture(scope="module")
def faults_lab(faults_engine: Engine, faults_echo_image: str) -> Iterator[Lab]:
    lab = Lab(faults_engine, faults_echo_image)
    yield lab
    lab.close()


class Faults:
    """The machinery under test, wired as the fire controller wires it."""

    def __init__(self, engine: Engine, helper: Helper | None) -> None:
        self.targets = Targets(engine)
        self.network = NetworkCutter(engine, self.targets, helper)
        self.peers = PeerCutter(engine, self.targets, helper)
        self.power = PowerSwitch(engine, self.targets, helper)
        self.storage = StoragePools(engine, helper) if helper is not None else None


@pytest.fixture
def faults(faults_engine: Engine, faults_helper: Helper) -> Iterator[Faults]:
    machinery = Faults(faults_engine, faults_helper)
    yield machinery
    with contextlib.suppress(Exception):
        machinery.peers.restore()
    with contextlib.suppress(Exception):
        machinery.network.restore()
    with contextlib.suppress(Exception):
        machinery.power.unpause()
    if machinery.storage is not None:
        with contextlib.suppress(Exception):
            machinery.storage.thaw()


# -- probes ---------------------------------------------------------------------------------


class Probe:
    """Ways to look at containers from the test process and from inside them."""

    @staticmethod
    def wait_listening(container: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        probe = [
            "python3",
            "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {ECHO_PORT}), 1)",
        ]
        while time.monotonic() < deadline:
            code, _ = container.exec_run(probe)
            if code == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"{container.name} never listened")

    @staticmethod
    def echo_once(host: str, timeout: float = 2.0) -> bytes:
        with socket.create_connection((host, ECHO_PORT), timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(100)

    @staticmethod
    def run_py(container: Any, code: str) -> tuple[int, str]:
        """Run `code` in the container; an exec the engine itself failed to start ("OCI
        runtime exec failed", exit 126: seen once in ~50 runs) is tried again, twice."""
        for _ in range(3):
            exit_code, out = container.exec_run(["python3", "-c", code])
            text = out.decode(errors="replace").strip()
            if not (exit_code == 126 and "OCI runtime exec failed" in text):
                break
            time.sleep(0.2)
        return int(exit_code), text

    @staticmethod
    def resolve_in(container: Any, name: str) -> str:
        code, out = Probe.run_py(container, f"import socket; print(socket.gethostbyname({name!r}))")
        assert code == 0, out
        return out

    @staticmethod
    def connect_from(container: Any, host: str, timeout: float = 1.0) -> str:
        """'ok' if `container` can open a connection to host:7000, else the error's class."""
        _, out = Probe.run_py(
            container,
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {ECHO_PORT}), {timeout})\n"
            "    print('ok')\n"
            "except OSError as e:\n"
            "    print(type(e).__name__)\n",
        )
        return out

    @staticmethod
    def write_and_sync(container: Any, path: str, text: str) -> tuple[int, str]:
        return Probe.run_py(
            container,
            f"import os\nf = open({path!r}, 'w'); f.write({text!r}); f.flush(); os.fsync(f.fileno())\n"
            f"print(open({path!r}).read())",
        )

    @staticmethod
    def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
        box: list[Any] = []
        thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
        thread.start()
        return thread, box


@pytest.fixture
def faults_probe() -> type[Probe]:
    return Probe


@pytest.fixture(scope="session")
def writer_session(tmp_path_factory: pytest.TempPathFactory) -> pytest.RunResult:
    """The disk-fault and power-cut inner tests, run once against one writer system."""
    result: pytest.RunResult = run_writer_session(tmp_path_factory.mktemp("writer"))
    return result
