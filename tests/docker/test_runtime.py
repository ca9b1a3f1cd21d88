"""The running system on a real engine: order, parallelism, handles, cleanup, the reaper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import docker
import pytest

from pytest_dcfire.runtime.engine import L_SESSION

pytestmark = pytest.mark.docker

IMAGE = "debian:bookworm-slim"

# b refuses to start unless a already answers, and c the same with b: a wrong start order
# makes the session fail.
CHAIN = f"""
sites: [east, west]
services:
  a:
    site: east
    image: {IMAGE}
    command: ["python3", "-c", "import time,socket; time.sleep(1.5); s=socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(); print('a up', flush=True); time.sleep(1e6)"]
    healthcheck: {{tcp: 7000}}
  b:
    site: west
    image: {IMAGE}
    depends_on: [a]
    command: ["python3", "-c", "import socket,time; socket.create_connection(('a', 7000), timeout=2); time.sleep(1.5); s=socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(); time.sleep(1e6)"]
    healthcheck: {{tcp: 7000}}
  c:
    site: [east, west]
    image: {IMAGE}
    depends_on: [b]
    environment: {{GREETING: hello}}
    command: ["python3", "-c", "import socket,os,time; socket.create_connection(('b', 7000), timeout=2); print(os.environ['GREETING'], flush=True); time.sleep(1e6)"]
    healthcheck: {{cmd: ["python3", "-c", "print('ok')"]}}
"""

#: The smallest system: one service that listens at once.
WAVE = f"""
sites: [east]
services:
  w:
    site: east
    image: {IMAGE}
    command: ["python3", "-c", "import time,socket; s=socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(); time.sleep(1e6)"]
    healthcheck: {{tcp: 7000}}
"""

#: One instance of a wave: it answers on 7001 at once, but listens on its health port 7000
#: only after every peer in `PEERS` has answered on 7001. A wave started one service at a
#: time (each waiting for the previous one's health) never becomes healthy; one started in
#: parallel does, however slow the machine.
RENDEZVOUS = (
    "import os, socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7001)); s.listen(16)\n"
    "peers = os.environ['PEERS'].split()\n"
    "while peers:\n"
    "    try:\n"
    "        socket.create_connection((peers[0], 7001), timeout=1).close()\n"
    "        peers.pop(0)\n"
    "    except OSError:\n"
    "        time.sleep(0.1)\n"
    "h = socket.socket(); h.bind(('0.0.0.0', 7000)); h.listen()\n"
    "time.sleep(1e6)\n"
)


def wave_service(name: str, peers: list[str]) -> str:
    return f"""
  {name}:
    site: east
    image: {IMAGE}
    command: ["python3", "-c", {json.dumps(RENDEZVOUS)}]
    environment: {{PEERS: {" ".join(peers)}}}
    healthcheck: {{tcp: 7000, budget: 60}}"""


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker.from_env()
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a Docker engine: {exc}")
    return client


def session_objects(client: docker.DockerClient, session: str) -> list[str]:
    flt = {"label": f"{L_SESSION}={session}"}
    return (
        [f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
        + [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
        + [f"network {n.name}" for n in client.networks.list(filters=flt)]
    )


def run_inner(pytester: pytest.Pytester, topology: str, test: str, *args: str) -> pytest.RunResult:
    (pytester.path / "topology.yml").write_text(textwrap.dedent(topology))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(test_inner=textwrap.dedent(test))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)


def test_chain_starts_in_order_and_handles_work(
    pytester: pytest.Pytester, engine: docker.DockerClient
) -> None:
    result = run_inner(
        pytester,
        CHAIN,
        """
        import json

        def test_system(dcfire_topology):
            t = dcfire_topology
            assert t.sites == ("east", "west")
            assert list(t.services) == ["a", "b", "c@east", "c@west"]
            c = t.service("c@west")
            assert (c.name, c.site) == ("c@west", "west")
            code, out = c.exec(["sh", "-c", "echo $GREETING; hostname"])
            assert code == 0 and out.split() == ["hello", "c-west"]
            assert c.exec("false")[0] == 1
            assert "hello" in c.logs()
            import pytest, socket
            from pytest_dcfire.errors import DcfireError
            with pytest.raises(DcfireError) as info:
                t.service("a").address(7000)  # a declares no port: no proxy, no silent bypass
            assert "port 7000 is not declared in the topology (declared ports: none)" in str(info.value)
            assert "`ports: [7000]`, or use direct_address(7000)" in str(info.value)
            host, port = t.service("a").direct_address(7000)
            socket.create_connection((host, port), timeout=2).close()
            started = {n: h.container.attrs["State"]["StartedAt"] for n, h in t.services.items()}
            assert started["a"] < started["b"] < started["c@east"]
            open("session.json", "w").write(json.dumps({"id": t.session_id}))
        """,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*starting wave 1/3: a", "*starting wave 3/3: c@east, c@west"])
    session = json.loads((pytester.path / "session.json").read_text())["id"]
    assert session_objects(engine, session) == []


def test_a_wave_starts_in_parallel(pytester: pytest.Pytester) -> None:
    """Four services of one wave that become healthy only once all four run: a start that
    waits for one service's health before starting the next fails its health budget."""
    names = [f"w{i}" for i in range(4)]
    services = "".join(wave_service(name, names) for name in names)
    result = run_inner(
        pytester,
        "sites: [east]\nservices:" + services + "\n",
        """
        def test_started(dcfire_topology):
            assert len(dcfire_topology.services) == 4
        """,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*starting wave 1/1: w0, w1, w2, w3"])


def test_startup_failure_names_the_service_and_shows_its_logs(
    pytester: pytest.Pytester,
) -> None:
    result = run_inner(
        pytester,
        f"""
        sites: [east]
        services:
          broken:
            site: east
            image: {IMAGE}
            command: ["sh", "-c", "echo cannot open config >&2; exit 3"]
            healthcheck: {{tcp: 7000, timeout: 5}}
        """,
        """
        def test_one(dcfire_topology):
            pass

        def test_two(dcfire_topology):
            pass

        def test_without_docker():
            pass
        """,
    )
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: service broken (site east) its container is exited*",
            "*cannot open config*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_refused_health_port_names_the_ports_the_container_listens_on(
    pytester: pytest.Pytester,
) -> None:
    """The health check asks 7000; one service listens on 7001, the other on 7000 but only
    on loopback: after its budget (`budget: 3`), each failure says what it listens on."""
    listen = (
        "import socket,time; s=socket.socket(); s.bind(({host!r}, {port})); s.listen(); "
        "time.sleep(1e6)"
    )
    result = run_inner(
        pytester,
        f"""
        sites: [east]
        services:
          elsewhere:
            site: east
            image: {IMAGE}
            command: ["python3", "-c", {listen.format(host="0.0.0.0", port=7001)!r}]
            healthcheck: {{tcp: 7000, budget: 3}}
        """,
        """
        def test_one(dcfire_topology):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*dcfire: service elsewhere (site east) not healthy (tcp port 7000): *refused*; "
            "the container listens on 7001, not on 7000: is the health check's port the one "
            "the service listens on?; waited * s of its 3 s budget (healthcheck.budget)*",
        ]
    )
    loopback = run_inner(
        pytester,
        f"""
        sites: [east]
        services:
          loopback:
            site: east
            image: {IMAGE}
            command: ["python3", "-c", {listen.format(host="127.0.0.1", port=7000)!r}]
            healthcheck: {{tcp: 7000, timeout: 3}}
        """,
        """
        def test_one(dcfire_topology):
            pass
        """,
    )
    loopback.assert_outcomes(errors=1)
    loopback.stdout.fnmatch_lines(
        ["*the container listens on port 7000 only on loopback: bind it to 0.0.0.0*"]
    )


def test_no_engine_fails_those_tests_with_one_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "topology.yml").write_text(textwrap.dedent(WAVE))
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        def test_needs(dcfire_topology):
            pass

        def test_plain():
            pass
        """
    )
    env_host = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    finally:
        if env_host is None:
            del os.environ["DOCKER_HOST"]
        else:
            os.environ["DOCKER_HOST"] = env_host
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*dcfire: no Docker engine at unix:///nonexistent/docker.sock (DOCKER_HOST)*"]
    )
    assert "Traceback" not in result.stdout.str()


def kill_agent(engine: docker.DockerClient, session: str) -> None:
    """SIGKILL the agent of `session` (only its: the session id is in its argv)."""
    flt = {"label": [f"{L_SESSION}={session}", "io.github.pytest-dcfire.role=helper"]}
    (helper,) = engine.containers.list(filters=flt)
    script = (
        "import os\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try: argv = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
        "    except OSError: continue\n"
        f"    if b'dcfire_agent' in argv and b'{session}' in argv: os.kill(int(p), 9)\n"
    )
    code, out = helper.exec_run(["python3", "-c", script])
    assert code == 0, out


def test_sigkilled_session_is_reaped_and_foreign_containers_survive(
    pytester: pytest.Pytester, engine: docker.DockerClient
) -> None:
    # A container that looks like ours (our label keys, a dead pid, a dcf name) but that we
    # did not create: it lacks the pid start time, so no session may claim it.
    foreign = engine.containers.run(
        IMAGE,
        ["sleep", "300"],
        name=f"dcf00000000-foreign-{os.getpid()}",
        labels={
            L_SESSION: "dcf00000000",
            "io.github.pytest-dcfire.pid": "999999",
            "io.github.pytest-dcfire.host": os.uname().nodename,
            "io.github.pytest-dcfire.role": "service",
        },
        detach=True,
    )
    try:
        (pytester.path / "topology.yml").write_text(textwrap.dedent(WAVE))
        pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
        pytester.makepyfile(
            test_hang="""
            import json, time

            def test_hang(dcfire_topology):
                open("session.json", "w").write(json.dumps({"id": dcfire_topology.session_id}))
                time.sleep(600)
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_hang.py"],
            cwd=pytester.path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        marker = pytester.path / "session.json"
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), "the inner session never started its system"
        session = json.loads(marker.read_text())["id"]
        # Its helper's agent dies first, so nothing of the session removes it (a helper lost
        # with its owner): then the next session's reaper is what removes it.
        kill_agent(engine, session)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert session_objects(engine, session), "SIGKILL should leave the system behind"

        marker.unlink()
        (pytester.path / "test_hang.py").unlink()
        result = run_inner(
            pytester,
            WAVE,
            """
            def test_next(dcfire_topology):
                pass
            """,
        )
        result.assert_outcomes(passed=1)
        # Any session that started on this host meanwhile (another xdist worker, another
        # run) may have reaped it first; either way nothing of it may be left.
        if session not in result.stdout.str():
            print(f"{session} was reaped by another session on this host first")
        else:
            result.stdout.fnmatch_lines([f"*removed what * dead session(s) left (*{session}*)*"])
        assert session_objects(engine, session) == []
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_keep_keeps_and_says_how_to_remove(
    pytester: pytest.Pytester, engine: docker.DockerClient
) -> None:
    result = run_inner(
        pytester,
        WAVE,
        """
        import json

        def test_one(dcfire_topology):
            open("session.json", "w").write(json.dumps({"id": dcfire_topology.session_id}))
        """,
        "--dcfire-keep",
    )
    result.assert_outcomes(passed=1)
    session = json.loads((pytester.path / "session.json").read_text())["id"]
    try:
        result.stdout.fnmatch_lines(
            [
                f"*kept the system of session {session}; remove it with:*",
                f"*docker rm -f $(docker ps -aq --filter label={L_SESSION}={session})*",
            ]
        )
        assert any(o.startswith("container") for o in session_objects(engine, session))
    finally:
        for c in engine.containers.list(all=True, filters={"label": f"{L_SESSION}={session}"}):
            c.remove(force=True)
        for n in engine.networks.list(filters={"label": f"{L_SESSION}={session}"}):
            n.remove()
        for v in engine.volumes.list(filters={"label": f"{L_SESSION}={session}"}):
            v.remove(force=True)


def test_foreign_containers_are_never_touched_by_a_session(
    pytester: pytest.Pytester, engine: docker.DockerClient
) -> None:
    bystander = engine.containers.run(
        IMAGE, ["sleep", "300"], detach=True, name=f"bystander-{os.getpid()}"
    )
    try:
        result = run_inner(pytester, WAVE, "def test_one(dcfire_topology):\n    pass\n")
        result.assert_outcomes(passed=1)
        bystander.reload()
        assert bystander.status == "running"
    finally:
        bystander.remove(force=True)


def test_a_health_port_refused_for_a_while_is_said_before_the_budget_runs_out(
    pytester: pytest.Pytester,
) -> None:
    """With the default budget a wrong health port cost a silent minute: after 5 s of
    refusals, a progress line says what the container listens on, once."""
    listen = (
        "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 7001)); s.listen(); "
        "time.sleep(1e6)"
    )
    result = run_inner(
        pytester,
        f"""
        sites: [east]
        services:
          elsewhere:
            site: east
            image: {IMAGE}
            command: ["python3", "-c", {listen!r}]
            healthcheck: {{tcp: 7000, budget: 9}}
        """,
        """
        def test_one(dcfire_topology):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    lines = result.stdout.lines
    notice = [n for n, line in enumerate(lines) if "health port 7000 still refused" in line]
    error = [n for n, line in enumerate(lines) if "not healthy (tcp port 7000)" in line]
    assert len(notice) == 1 and error and notice[0] < error[0], result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "dcfire: elsewhere: health port 7000 still refused after * s; the container "
            "listens on 7001, not on 7000: is the health check's port the one the service "
            "listens on? (waiting up to 9 s)",
        ]
    )
