"""Fires through the plugin, end to end: markers and the fixture against real containers.

Each test runs an inner pytest session (a subprocess, as a user's run) against a small
two-site topology of TCP echo servers whose data lives on their site's storage pool.
"""

from __future__ import annotations

import textwrap

import pytest
from inner_session import echo_topology, run_inner

pytestmark = pytest.mark.docker


TOPOLOGY = echo_topology()

HELPERS = '''
import socket, threading, time

import pytest

from pytest_dcfire import dc_fire


def echo_once(addr, payload=b"ping", timeout=2.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(100)


def resolve_in(handle, name):
    code, out = handle.exec(["python3", "-c", f"import socket; print(socket.gethostbyname({name!r}))"])
    assert code == 0, out
    return out.strip()


def write_and_sync(handle, path, text):
    return handle.exec(["sh", "-c", f"echo {text} > {path} && sync {path} && cat {path}"])


def in_thread(fn):
    """Run fn in a thread; return (thread, box) where box gets the result."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    return t, box
'''


def run_fires(
    pytester: pytest.Pytester, tests: str, *args: str, conftest: str = ""
) -> pytest.RunResult:
    result: pytest.RunResult = run_inner(
        pytester, TOPOLOGY, HELPERS + textwrap.dedent(tests), *args, conftest=conftest
    )
    return result


def test_fire_blackholes_network_and_freezes_storage(pytester: pytest.Pytester) -> None:
    result = run_fires(
        pytester,
        """
        def test_blackhole(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            west = dcfire_topology.service("echo@west")
            established = socket.create_connection(east.direct_address(7000), timeout=2)
            established.sendall(b"before")
            assert established.recv(100) == b"before"
            # The same through the link proxy that address() goes through.
            proxied = socket.create_connection(east.address(7000), timeout=2)
            assert east.address(7000) != east.direct_address(7000)
            proxied.sendall(b"before")
            assert proxied.recv(100) == b"before"

            with dcfire.fire("east") as fire:
                assert dcfire.burning == ("east",)
                assert fire.record.targets == ["echo@east"]
                # An established connection hangs: no reset, no EOF, just silence.
                established.settimeout(1.0)
                established.sendall(b"during")
                with pytest.raises(TimeoutError):
                    established.recv(100)
                # A new connection times out instead of being refused.
                with pytest.raises(TimeoutError):
                    socket.create_connection(east.direct_address(7000), timeout=1.0)
                # Through the proxy: the established connection hangs too, and a new one is
                # accepted (the proxy listens) but never answers.
                proxied.settimeout(1.0)
                proxied.sendall(b"during")
                with pytest.raises(TimeoutError):
                    proxied.recv(100)
                with socket.create_connection(east.address(7000), timeout=1.0) as fresh:
                    fresh.sendall(b"hello?")
                    with pytest.raises(TimeoutError):
                        fresh.recv(100)
                # The other site still answers, and names still resolve both ways.
                assert echo_once(west.address(7000)) == b"ping"
                assert resolve_in(west, "echo.east") == east.ip
                assert resolve_in(east, "echo.west") == west.ip
                # Loopback inside the burning container keeps working.
                code, out = east.exec(["python3", "-c",
                    "import socket; s=socket.create_connection(('127.0.0.1', 7000), 2); "
                    "s.sendall(b'lo'); print(s.recv(10).decode())"])
                assert (code, out.strip()) == (0, "lo")
            assert dcfire.burning == ()
            # Restored: the same established connection delivers what was held back.
            established.settimeout(10.0)  # the kernel retransmits with backoff
            got = b""
            while len(got) < len(b"during"):
                got += established.recv(100)
            assert got == b"during"
            proxied.settimeout(10.0)
            got = b""
            while len(got) < len(b"during"):
                got += proxied.recv(100)
            assert got == b"during"
            proxied.close()
            assert echo_once(east.address(7000)) == b"ping"
            assert echo_once(east.direct_address(7000)) == b"ping"

        def test_storage_blocks_until_restore(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            fire = dcfire.fire("east")
            thread, box = in_thread(lambda: write_and_sync(east, "/data/f", "kept"))
            thread.join(2.0)
            assert thread.is_alive(), "a write+sync on a frozen pool must block"
            fire.extinguish()
            thread.join(20)
            assert box == [(0, "kept\\n")]
            assert east.exec(["cat", "/data/f"]) == (0, "kept\\n")

        @dc_fire("east", mode="partition")
        def test_partition_leaves_storage_writable(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            with pytest.raises(TimeoutError):
                socket.create_connection(east.direct_address(7000), timeout=1.0)
            started = time.monotonic()
            assert write_and_sync(east, "/data/p", "free") == (0, "free\\n")
            assert time.monotonic() - started < 5

        @dc_fire("west", mode="freeze")
        def test_freeze_pauses(dcfire, dcfire_topology):
            west = dcfire_topology.service("echo@west")
            west.container.reload()
            assert west.container.status == "paused"

        def test_freeze_was_undone(dcfire_topology):
            west = dcfire_topology.service("echo@west")
            west.container.reload()
            assert west.container.status == "running"
            assert echo_once(west.address(7000)) == b"ping"

        def test_power_loss_restarts_from_the_same_disk(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            assert write_and_sync(east, "/data/power", "survives")[0] == 0
            east.container.reload()
            before = east.container.attrs["State"]["StartedAt"]
            with dcfire.fire("east", mode="power-loss"):
                east.container.reload()
                assert east.container.status == "exited"
            east.container.reload()
            assert east.container.status == "running"
            assert east.container.attrs["State"]["StartedAt"] != before
            assert east.exec(["cat", "/data/power"]) == (0, "survives\\n")
            assert echo_once(east.address(7000)) == b"ping"

        @dc_fire("east", "west")
        def test_two_sites_at_once(dcfire, dcfire_topology):
            assert set(dcfire.burning) == {"east", "west"}
            for name in ("echo@east", "echo@west"):
                with pytest.raises(TimeoutError):
                    socket.create_connection(
                        dcfire_topology.service(name).direct_address(7000), timeout=0.5
                    )
        """,
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*dcfire: fires*", "*test_blackhole*east [[]fire[]]*1*"])


def test_restore_after_failure_exception_and_interrupt(pytester: pytest.Pytester) -> None:
    conftest = """
        def pytest_dcfire_after_ignite(fire, item):
            with open("events.log", "a") as f:
                f.write(f"ignite {item.name} {'+'.join(fire.sites)} {fire.mode}\\n")

        def pytest_dcfire_after_restore(fire, item):
            with open("events.log", "a") as f:
                f.write(f"restore {item.name} {'+'.join(fire.sites)}\\n")
        """
    result = run_fires(
        pytester,
        """
        @dc_fire("east")
        def test_fails(dcfire_topology):
            assert False, "the system did not fail over"

        @dc_fire("east", mode="power-loss")
        def test_raises(dcfire_topology):
            raise RuntimeError("boom")

        def test_next_test_sees_a_healthy_site(dcfire_topology):
            assert echo_once(dcfire_topology.service("echo@east").address(7000)) == b"ping"

        @pytest.mark.timeout(2, method="signal")
        @dc_fire("west", mode="partition")
        def test_times_out(dcfire_topology):
            time.sleep(30)

        @dc_fire("west")
        def test_interrupted(dcfire_topology):
            raise KeyboardInterrupt

        def test_never_runs():
            pass
        """,
        conftest=conftest,
    )
    result.assert_outcomes(passed=1, failed=3)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    events = (pytester.path / "events.log").read_text().splitlines()
    assert events == [
        "ignite test_fails east fire",
        "restore test_fails east",
        "ignite test_raises east power-loss",
        "restore test_raises east",
        "ignite test_times_out west partition",
        "restore test_times_out west",
        "ignite test_interrupted west fire",
        "restore test_interrupted west",
    ]


def test_rto_counts_until_a_hanging_probe_answers(pytester: pytest.Pytester) -> None:
    """A probe sent while east is dark hangs (the SYN vanishes) and answers after the restore:
    the RTO is the moment it answered, at least the 1.5 s the fire burned, and the JUnit
    property says the same number."""
    result = run_fires(
        pytester,
        """
        def test_hanging_probe(dcfire, dcfire_topology):
            east = dcfire_topology.service("echo@east")
            fire = dcfire.fire("east", storage=False)
            probe = lambda: echo_once(east.direct_address(7000), timeout=20) == b"ping"
            t, box = in_thread(lambda: dcfire.measure_recovery(probe, stable=2, timeout=40))
            time.sleep(1.5)
            fire.extinguish()
            t.join(60)
            [recovery] = box
            assert recovery.failures == 0  # the first probe hung, then succeeded
            assert recovery.rto >= 1.5, recovery
            print(f"RTO={recovery.rto:.3f}")
        """,
        "-s",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=1)
    rto = float(result.stdout.str().split("RTO=")[1].split()[0])
    import xml.etree.ElementTree as ET

    props = {
        p.attrib["name"]: p.attrib["value"]
        for p in ET.parse(pytester.path / "junit.xml").iter("property")
    }
    assert abs(float(props["dcfire_rto_s"]) - rto) < 0.002, (props, rto)


def test_a_probe_with_no_timeout_cannot_hang_the_test_past_its_wait(
    pytester: pytest.Pytester,
) -> None:
    """A new user's probe: a socket with no timeout, on the site that burns. The wait's
    `timeout` still ends the test, with an error saying the call hung and what to do."""
    result = run_fires(
        pytester,
        """
        @dc_fire("east")
        def test_probe_without_timeout(dcfire, dcfire_topology):
            addr = dcfire_topology.service("echo@east").address(7000)

            def probe():
                with socket.create_connection(addr) as s:  # no timeout at all
                    s.sendall(b"ping")
                    return s.recv(100) == b"ping"

            started = time.monotonic()
            try:
                dcfire.measure_recovery(probe, timeout=3)
            finally:
                print(f"WAITED={time.monotonic() - started:.1f}")
        """,
        "-s",
    )
    result.assert_outcomes(failed=1)
    assert float(result.stdout.str().split("WAITED=")[1].split()[0]) < 10
    result.stdout.fnmatch_lines(
        [
            "*RecoveryTimeout: no recovery: *probe did not succeed 3 times in a row within 3 s: "
            "the last call was still running after 3.0 s*needs a timeout of its own*"
        ]
    )
