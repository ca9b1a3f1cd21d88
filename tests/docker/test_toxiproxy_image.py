"""Image mode: `dcfire_toxiproxy = image:<ref>` runs a Toxiproxy image on the topology network.

The official image cannot be pulled here, so the test builds a local image that runs this
project's own server (`python -m pytest_dcfire.toxiproxy --host 0.0.0.0`): the same
contract as ghcr.io/shopify/toxiproxy (the API on port 8474 of every address).
"""

from __future__ import annotations

from pathlib import Path

import docker
import docker.errors
import pytest
from inner_session import ECHO, build_test_image, run_inner

import pytest_dcfire

pytestmark = pytest.mark.docker

DOCKERFILE = """\
FROM debian:bookworm-slim
COPY pytest_dcfire /app/pytest_dcfire
WORKDIR /app
EXPOSE 8474
CMD ["python3", "-m", "pytest_dcfire.toxiproxy", "--host", "0.0.0.0", "--port", "8474"]
"""


TOPOLOGY = f"""
sites: [east, west]
services:
  echo:
    site: east
    image: debian:bookworm-slim
    command: ["python3", "-c", {ECHO!r}]
    ports: [7000]
    healthcheck: {{tcp: 7000, timeout: 30}}
  client:
    site: west
    image: debian:bookworm-slim
    command: ["sleep", "infinity"]
    environment: {{ECHO: "${{link:echo:7000}}"}}
"""

TESTS = """
import socket

import pytest

from pytest_dcfire.plugin import SESSION_KEY

PROBE = '''
import os, socket
host, port = os.environ["ECHO"].rsplit(":", 1)
try:
    with socket.create_connection((host, int(port)), timeout=1.5) as s:
        s.sendall(b"ping")
        print(s.recv(10).decode())
except OSError as e:
    print(type(e).__name__)
'''


def from_client(dcfire_topology):
    code, out = dcfire_topology.service("client").exec(["python3", "-c", PROBE])
    return out.strip()


def test_the_image_serves_edge_and_links(request, dcfire_topology):
    links = request.config.stash[SESSION_KEY].links
    assert links.server is None and links.mode == "image"
    container = links._container
    container.reload()
    ip = container.attrs["NetworkSettings"]["Networks"][dcfire_topology.network.name]["IPAddress"]
    assert links.client.url == f"http://{ip}:8474"
    echo = dcfire_topology.service("echo")
    assert echo.address(7000)[0] == ip
    with socket.create_connection(echo.address(7000), timeout=2) as s:
        s.sendall(b"edge")
        assert s.recv(10) == b"edge"
    env = dict(e.split("=", 1) for e in dcfire_topology.service("client").container.attrs["Config"]["Env"])
    assert env["ECHO"].startswith(ip + ":")
    assert from_client(dcfire_topology) == "ping"


def test_a_fire_cuts_the_edge_and_the_link_in_the_container(dcfire, dcfire_topology):
    echo = dcfire_topology.service("echo")
    with dcfire.fire("east", storage=False) as fire:
        with socket.create_connection(echo.address(7000), timeout=1.0) as s:
            s.sendall(b"x")
            with pytest.raises(TimeoutError):
                s.recv(10)
        assert from_client(dcfire_topology) == "TimeoutError"
        assert "blackhole" in fire.record.methods
    assert from_client(dcfire_topology) == "ping"
"""


@pytest.fixture(scope="module")
def toxiproxy_image() -> str:
    """Our server in an image, built once per source version (tag = content hash)."""
    package = Path(pytest_dcfire.__file__).parent
    files = {"Dockerfile": DOCKERFILE.encode(), "pytest_dcfire/__init__.py": b""}
    for path in sorted((package / "toxiproxy").glob("*.py")):
        files[f"pytest_dcfire/toxiproxy/{path.name}"] = path.read_bytes()
    tag: str = build_test_image(docker.from_env(), "pytest-dcfire-test-toxiproxy", files)
    return tag


def test_image_mode_runs_the_server_on_the_topology_network(
    pytester: pytest.Pytester, toxiproxy_image: str
) -> None:
    result = run_inner(
        pytester, TOPOLOGY, TESTS, ini=f"dcfire_toxiproxy = image:{toxiproxy_image}\n"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*Toxiproxy {toxiproxy_image} running at http://10.213.*:8474"])
    left = docker.from_env().containers.list(all=True, filters={"ancestor": toxiproxy_image})
    assert left == [], "the Toxiproxy container outlived its session"


def test_an_image_that_is_not_there_fails_naming_the_ini_key(pytester: pytest.Pytester) -> None:
    (pytester.path / "topology.yml").write_text(TOPOLOGY)
    pytester.makeini(
        "[pytest]\ndcfire_topology = topology.yml\n"
        "dcfire_toxiproxy = image:pytest-dcfire-test/no-such-toxiproxy:0\n"
    )
    pytester.makepyfile(test_inner="def test_needs_system(dcfire_topology):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*dcfire_toxiproxy = 'image:pytest-dcfire-test/no-such-toxiproxy:0': the image is "
            "not on the engine and pulling it failed*build it or `docker load` it first*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
