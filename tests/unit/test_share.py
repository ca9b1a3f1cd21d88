"""`dcfire_share`: option and ini precedence, the fire lock between processes, which tests
take which lock, and that without xdist workers nothing changes (no Docker needed)."""

from __future__ import annotations

import fcntl
import multiprocessing
import multiprocessing.sharedctypes  # before pytester's snapshots of sys.modules (Array)
import multiprocessing.synchronize
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire.config import read_settings
from pytest_dcfire.errors import ConfigError
from pytest_dcfire.share import FireLock, lock_mode

pytestmark = pytest.mark.usefixtures("write_topology")

# Lock holders in other processes: spawned, since forking a multi-threaded pytest warns
# (Python 3.12+) and may deadlock.
_SPAWN = multiprocessing.get_context("spawn")


def _show_share(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_dcfire.plugin import SESSION_KEY

        def pytest_report_header(config):
            return [f"SHARE {config.stash[SESSION_KEY].settings.share}"]
        """
    )


def test_share_is_worker_by_default_and_read_from_ini(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    _show_share(pytester)
    pytester.runpytest("--co").stdout.fnmatch_lines(["SHARE worker"])
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_share = Session\n")
    pytester.runpytest("--co").stdout.fnmatch_lines(["SHARE session"])


def test_cli_beats_ini(pytester: pytest.Pytester, write_topology: Callable[..., Path]) -> None:
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_share = session\n")
    _show_share(pytester)
    result = pytester.runpytest("--co", "--dcfire-share", "worker")
    result.stdout.fnmatch_lines(["SHARE worker"])


def test_the_option_is_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--dcfire-share=worker|session*", "*dcfire_share (string)*"])


@pytest.mark.parametrize(
    ("ini", "cli", "expected"),
    [
        ({"dcfire_share": "all"}, {}, "dcfire_share = 'all' is not valid; use worker"),
        ({}, {"share": ""}, "--dcfire-share = '' is not valid; use worker"),
        ({"dcfire_share": "worker"}, {"share": "both"}, "--dcfire-share = 'both'"),
    ],
)
def test_bad_values_name_the_key_and_the_valid_ones(
    tmp_path: Path, ini: dict[str, str], cli: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        read_settings(ini, cli, None, tmp_path)
    assert expected in str(err.value)
    assert "session (one copy for the whole run" in str(err.value)


def test_share_session_without_xdist_workers_runs_as_before(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    """`-p no:xdist` and `-n 0`: no controller hook, no lock, nothing started eagerly."""
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\ndcfire_share = session\n")
    pytester.makepyfile(
        """
        def test_plain(pytestconfig):
            state = pytestconfig.stash[__import__("pytest_dcfire.plugin").plugin.SESSION_KEY]
            assert state.system is None and state.shared is None and not state.serving
            assert not pytestconfig.pluginmanager.has_plugin("dcfire-share-lock")
        """
    )
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    pytester.runpytest("-n", "0").assert_outcomes(passed=1)


# -- the lock -----------------------------------------------------------------------------


def _hold(
    path: str,
    exclusive: bool,
    seconds: float,
    ready: multiprocessing.synchronize.Event,
    asking: multiprocessing.synchronize.Event | None = None,
) -> None:
    lock = FireLock(path)
    if asking is not None:
        asking.set()
    lock.acquire(exclusive)
    ready.set()
    time.sleep(seconds)
    lock.release()


def _held_by_other(path: Path, exclusive: bool, seconds: float) -> SpawnProcess:
    ready = _SPAWN.Event()
    proc = _SPAWN.Process(target=_hold, args=(str(path), exclusive, seconds, ready))
    proc.start()
    assert ready.wait(60)
    return proc


def test_a_dead_holder_releases_the_lock(tmp_path: Path) -> None:
    other = _held_by_other(tmp_path / "fires.lock", exclusive=True, seconds=60)
    other.kill()  # a worker SIGKILLed mid-fire: the kernel drops its flock
    other.join(10)
    lock = FireLock(tmp_path / "fires.lock")
    assert lock.acquire(exclusive=True) < 5
    lock.release()


def _hold_until(
    path: str,
    exclusive: bool,
    release: multiprocessing.synchronize.Event,
    times: Any,
) -> None:
    """Hold the lock until `release`; `times` gets (asked, acquired, releasing) instants."""
    lock = FireLock(path)
    times[0] = time.monotonic()
    lock.acquire(exclusive)
    times[1] = time.monotonic()
    release.wait(60)
    times[2] = time.monotonic()
    lock.release()


def _gate_is_held(path: Path) -> bool:
    """Somebody holds the turnstile: a writer queued behind the reader."""
    fd = os.open(path.with_name(path.name + ".gate"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own flock, if it got it
    return False


def _holder(path: Path, exclusive: bool) -> tuple[SpawnProcess, Any, Any]:
    """Another process that holds the lock until told: (process, its go event, its times)."""
    go, times = _SPAWN.Event(), _SPAWN.Array("d", 3)
    proc = _SPAWN.Process(target=_hold_until, args=(str(path), exclusive, go, times))
    proc.start()
    deadline = time.monotonic() + 60
    while not times[1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert times[1], "the other process never got the lock"
    return proc, go, times


def _asking(path: Path, exclusive: bool) -> tuple[threading.Thread, list[float]]:
    """A thread of this process that takes the lock, notes when it got it, lets go."""
    got: list[float] = []

    def take() -> None:
        lock = FireLock(path)
        lock.acquire(exclusive)
        got.append(time.monotonic())
        lock.release()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, got


def _waits_for(path: Path, held: bool, asked: bool) -> None:
    """The one asking (`asked`: exclusive) gets the lock only once the other process holding
    it (`held`: exclusive) let go: ordered by their own instants, not by a wall-clock bound."""
    proc, go, times = _holder(path, held)
    try:
        thread, got = _asking(path, asked)
        thread.join(0.5)  # a lock that let it in beside the holder would have by now
        go.set()
        thread.join(60)
        assert got, "it never got the lock"
        assert got[0] >= times[2], "it got the lock while the other process held it"
    finally:
        go.set()
        proc.join(60)


def test_exclusive_waits_for_a_reader_of_another_process(tmp_path: Path) -> None:
    _waits_for(tmp_path / "fires.lock", held=False, asked=True)


def test_readers_share_and_a_writer_excludes_them(tmp_path: Path) -> None:
    path = tmp_path / "fires.lock"
    proc, go, times = _holder(path, exclusive=False)
    try:
        thread, got = _asking(path, exclusive=False)
        thread.join(60)  # the other reader holds on until told: only sharing lets this in
        assert got and not times[2], "a second reader waited for the first"
    finally:
        go.set()
        proc.join(60)
    _waits_for(path, held=True, asked=False)  # no reader while a site burns


def test_a_waiting_writer_is_not_starved_by_new_readers(tmp_path: Path) -> None:
    """Ordered by the lock's own events, not by the clock: a reader that asks while a writer
    waits gets in only after that writer let go."""
    path = tmp_path / "fires.lock"
    first_go, writer_go = _SPAWN.Event(), _SPAWN.Event()
    first, writer = _SPAWN.Array("d", 3), _SPAWN.Array("d", 3)
    holder = _SPAWN.Process(target=_hold_until, args=(str(path), False, first_go, first))
    holder.start()
    waiter = _SPAWN.Process(target=_hold_until, args=(str(path), True, writer_go, writer))
    try:
        deadline = time.monotonic() + 60
        while not first[1] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first[1], "the first reader never got the lock"
        waiter.start()
        while not _gate_is_held(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not writer[1], "the writer got in beside a reader"
        assert writer[0], "the writer never queued"
        # The writer waits in the turnstile; a new reader asks now, from a thread.
        second: list[float] = []

        def read() -> None:
            lock = FireLock(path)
            second.append(time.monotonic())
            lock.acquire(exclusive=False)
            second.append(time.monotonic())
            lock.release()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(0.5)  # a lock without the turnstile lets it in here, beside the first
        first_go.set()  # the first reader lets go: the writer, then the new reader
        writer_go.set()
        reader.join(60)
        holder.join(60)
        waiter.join(60)
        assert len(second) == 2, "the new reader never got the lock"
        assert first[2] <= writer[1], "the writer got in before the first reader let go"
        assert writer[2] <= second[1], "a reader got in while a writer was waiting"
    finally:
        first_go.set()
        writer_go.set()
        for proc in (holder, waiter):
            if proc.is_alive():
                proc.kill()
                proc.join(10)


def test_lock_is_not_reentrant(tmp_path: Path) -> None:
    lock = FireLock(tmp_path / "fires.lock")
    lock.acquire(exclusive=False)
    with pytest.raises(RuntimeError):
        lock.acquire(exclusive=False)
    lock.release()
    assert not lock.held


class _Item:
    def __init__(self, *names: str) -> None:
        self.fixturenames = list(names)


@pytest.mark.parametrize(
    ("names", "mode"),
    [
        (("dcfire", "dcfire_topology"), "exclusive"),
        (("dcfire_topology",), "shared"),
        (("tmp_path",), None),
    ],
)
def test_which_tests_take_which_lock(names: tuple[str, ...], mode: str | None) -> None:
    assert lock_mode(_Item(*names)) == mode  # type: ignore[arg-type]


def test_a_fault_marker_takes_the_exclusive_lock(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    """Markers get `dcfire` at collection, so they count as burning tests."""
    write_topology()
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makeconftest(
        """
        import pytest
        from pytest_dcfire.share import lock_mode

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(items):
            for item in items:
                print("MODE", item.name, lock_mode(item))
        """
    )
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire, partition

        @dc_fire("pangyo")
        def test_fire(): pass

        @partition("pangyo", "ansan")
        def test_partition(): pass

        def test_look(dcfire_topology): pass
        """
    )
    result = pytester.runpytest("--co", "-s")
    result.stdout.fnmatch_lines(
        ["MODE test_fire exclusive", "MODE test_partition exclusive", "MODE test_look shared"]
    )


# -- what the controller hands its workers (fakes: pure logic) ------------------------------


class _State:
    def __init__(self, share: str, compose: object = None, burn: tuple[str, ...] = ()) -> None:
        from types import SimpleNamespace

        from pytest_dcfire.burn import SuiteBurn

        self.settings = SimpleNamespace(share=share)
        self.topology = object()
        self.compose = compose
        self.serving = False
        self.started = 0
        self.burn = SuiteBurn(burn)

    def start(self) -> None:
        from pytest_dcfire.errors import DcfireError

        self.started += 1
        raise DcfireError("no Docker engine at nowhere")

    start_adopted = start


def _controller(state: _State) -> object:
    from types import SimpleNamespace

    from pytest_dcfire.share import ShareController

    config = SimpleNamespace(option=SimpleNamespace(dcfire_plan=False, collectonly=False))
    return ShareController(config, state)  # type: ignore[arg-type]


def _node() -> object:
    from types import SimpleNamespace

    return SimpleNamespace(workerinput={})


def test_per_worker_mode_hands_out_nothing() -> None:
    controller, node = _controller(_State("worker")), _node()
    controller.pytest_configure_node(node)  # type: ignore[attr-defined]
    assert node.workerinput == {}  # type: ignore[attr-defined]


def test_adopted_compose_containers_get_the_lock_in_per_worker_mode() -> None:
    from pytest_dcfire.share import LOCK_KEY, SHARED_KEY

    controller, node = _controller(_State("worker", compose=object())), _node()
    controller.pytest_configure_node(node)  # type: ignore[attr-defined]
    assert Path(node.workerinput[LOCK_KEY]).parent.is_dir()  # type: ignore[attr-defined]
    assert SHARED_KEY not in node.workerinput  # type: ignore[attr-defined]
    controller.pytest_unconfigure(None)  # type: ignore[attr-defined]
    assert not Path(node.workerinput[LOCK_KEY]).parent.exists()  # type: ignore[attr-defined]


def test_the_controller_burns_adopted_containers_once_for_per_worker_copies() -> None:
    """Per-worker copies, an adopted compose project, a session burn: the controller burns
    the adopted containers (once, before any worker runs) and tells every worker."""
    from pytest_dcfire.share import BURN_KEY, SHARED_KEY

    state = _State("worker", compose=object(), burn=("east",))
    controller = _controller(state)
    nodes = [_node(), _node()]
    for node in nodes:
        controller.pytest_configure_node(node)  # type: ignore[attr-defined]
    assert state.started == 1
    for node in nodes:
        assert node.workerinput[BURN_KEY] == {"failure": "no Docker engine at nowhere"}  # type: ignore[attr-defined]
        assert SHARED_KEY not in node.workerinput  # type: ignore[attr-defined]
    controller.pytest_unconfigure(None)  # type: ignore[attr-defined]


def test_a_worker_refuses_to_start_when_the_controller_could_not_burn() -> None:
    from pytest_dcfire.errors import DcfireError
    from pytest_dcfire.session import DcfireSession
    from pytest_dcfire.share import hold_controller_burn

    state = DcfireSession(None, object(), lambda line: None)  # type: ignore[arg-type]
    hold_controller_burn(state, {"failure": "--dcfire-burn east: no helper"})
    with pytest.raises(DcfireError, match="--dcfire-burn east: no helper"):
        state.start()
    state = DcfireSession(None, object(), lambda line: None)  # type: ignore[arg-type]
    hold_controller_burn(state, {"containers": ["abc"], "since": 1.0, "members": ["api"]})
    assert state.burn.held == {"abc"} and state.burn.members == ["api"]


def test_a_failed_shared_start_is_started_once_and_told_to_every_worker() -> None:
    from pytest_dcfire.share import LOCK_KEY, SHARED_KEY

    state = _State("session")
    controller = _controller(state)
    nodes = [_node(), _node()]
    for node in nodes:
        controller.pytest_configure_node(node)  # type: ignore[attr-defined]
    assert state.started == 1 and state.serving
    for node in nodes:
        assert node.workerinput[SHARED_KEY] == {"failure": "no Docker engine at nowhere"}  # type: ignore[attr-defined]
    assert nodes[0].workerinput[LOCK_KEY] == nodes[1].workerinput[LOCK_KEY]  # type: ignore[attr-defined]
    controller.pytest_unconfigure(None)  # type: ignore[attr-defined]


def test_a_worker_of_a_failed_shared_copy_says_why() -> None:
    from pytest_dcfire.errors import DcfireError
    from pytest_dcfire.session import DcfireSession

    state = DcfireSession(None, object(), lambda line: None)  # type: ignore[arg-type]
    state.share({"failure": "no Docker engine at nowhere"})
    with pytest.raises(DcfireError, match="did not start in the xdist controller: no Docker"):
        state.start()
