"""A reusable system's agent serves one owner after another (`agent/serve.py`), reached
through the relay each new owner execs (`agent/relay.py`): on real unix sockets and pipes,
with a stand-in for the agent's parts (what it applies is the agent's own tests' concern)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire.faults.agent import relay
from pytest_dcfire.faults.agent.serve import owner_of, serve
from pytest_dcfire.faults.agent.watchdog import Owner
from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.runtime.engine import SessionIdentity


class FakeAgent:
    """What `serve` uses of the agent: its state directory, `send`, `next_owner`,
    `undo_all`; it records the undos and the owners it served."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.out: Any = None
        self.undos = 0
        self.owners = 0

    def next_owner(self, out: Any) -> None:
        self.out = out
        self.owners += 1

    def send(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def undo_all(self) -> None:
        self.undos += 1


def echo_lines(agent: FakeAgent) -> Callable[[Callable[[], bytes]], bool]:
    """Answers every line with its op; a `shutdown` ends the agent (as `__main__.lines`)."""

    def lines(readline: Callable[[], bytes]) -> bool:
        while line := readline():
            op = json.loads(line)["op"]
            agent.send({"ok": True, "op": op})
            if op == "shutdown":
                return False
        return True

    return lines


@pytest.fixture
def served() -> Iterator[tuple[FakeAgent, threading.Thread]]:
    # A short path: a unix socket's path has room for 107 bytes.
    state = Path(tempfile.mkdtemp(prefix="dcf", dir="/tmp")) / "dcfabc"
    state.mkdir()
    agent = FakeAgent(str(state))
    thread = threading.Thread(
        target=serve,
        args=(agent, lambda owner: {"ready": True, "owner": str(owner)}, echo_lines(agent)),
        kwargs={"quiet": lambda: None},
        daemon=True,
    )
    thread.start()
    yield agent, thread
    shutil.rmtree(state.parent, ignore_errors=True)


def connect(agent: FakeAgent, owner: str = "12:34") -> tuple[socket.socket, Any]:
    path = f"{agent.state}/{relay.SOCKET}"
    for _ in range(200):  # the path appears only once the agent listens: never refused
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            break
        except FileNotFoundError:
            sock.close()
            threading.Event().wait(0.01)
    else:
        raise AssertionError(f"nothing listens on {path}")
    sock.sendall(relay.owner_line(["relay.py", "dcfabc", "--owner", owner]))
    return sock, sock.makefile("rb")


def test_each_owner_is_greeted_served_and_its_going_undoes_the_faults(
    served: tuple[FakeAgent, threading.Thread],
) -> None:
    agent, thread = served
    for owner in ("12:34", "56:78"):
        sock, reader = connect(agent, owner)
        assert json.loads(reader.readline()) == {"ready": True, "owner": f"pid {owner[:2]}"}
        sock.sendall(b'{"op": "cut"}\n')
        assert json.loads(reader.readline()) == {"ok": True, "op": "cut"}
        undos = agent.undos
        reader.close()
        sock.close()  # the owner died: its relay's socket closed
        for _ in range(200):
            if agent.undos > undos:
                break
            threading.Event().wait(0.01)
        assert agent.undos == undos + 1
    assert agent.owners == 2
    assert thread.is_alive()  # waiting for a third owner


def test_a_shutdown_ends_the_agent_and_removes_its_socket(
    served: tuple[FakeAgent, threading.Thread],
) -> None:
    agent, thread = served
    sock, reader = connect(agent)
    reader.readline()
    sock.sendall(b'{"op": "shutdown"}\n')
    assert json.loads(reader.readline())["op"] == "shutdown"
    thread.join(5)
    assert not thread.is_alive()
    assert not os.path.exists(f"{agent.state}/{relay.SOCKET}")
    assert agent.undos >= 1
    reader.close()
    sock.close()


def test_the_relay_copies_both_ways_until_the_owner_goes(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    pumping = threading.Thread(target=relay.pump, args=(ours, stdin_r, stdout_w), daemon=True)
    pumping.start()
    os.write(stdin_w, b'{"op": "ping"}\n')
    assert theirs.recv(100) == b'{"op": "ping"}\n'
    theirs.sendall(b'{"ok": true}\n')
    assert os.read(stdout_r, 100) == b'{"ok": true}\n'
    os.close(stdin_w)  # the engine closes the exec's stdin when the owner dies
    pumping.join(5)
    assert not pumping.is_alive()
    for fd in (stdin_r, stdout_r, stdout_w):
        os.close(fd)
    ours.close()
    theirs.close()


def test_the_relay_finds_no_agent_where_none_listens(tmp_path: Path) -> None:
    assert relay.connect("dcfabc", root=str(tmp_path)) is None


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["r", "dcfabc", "--owner", "12:34"], b'{"owner": "12:34"}\n'),
        (["r", "dcfabc", "--keep", "--serve"], b'{"owner": ""}\n'),
    ],
)
def test_the_relay_names_the_new_owner(argv: list[str], line: bytes) -> None:
    assert relay.owner_line(argv) == line
    assert owner_of(line) == (Owner(12, "34") if b"12" in line else None)


def test_the_relay_refuses_a_bad_owner() -> None:
    with pytest.raises(SystemExit):
        relay.owner_line(["r", "dcfabc", "--owner", "12;rm"])
    assert owner_of(b"garbage") is None


class _Engine:
    def __init__(self) -> None:
        self.session = SessionIdentity("dcfab", "host", 12, "34")


def test_a_reusable_helper_reaches_its_agent_through_the_relay() -> None:
    from pytest_dcfire.faults.agent.__main__ import parse_args

    helper = Helper(_Engine(), keep_system=True, reusable=True)  # type: ignore[arg-type]
    command = helper.agent_command()
    assert command[:3] == ["python3", "-S", "/opt/dcfire/dcfire_agent/relay.py"]
    assert command[3:] == ["dcfab", "--owner", "12:34", "--keep", "--serve"]
    assert parse_args(["m", *command[3:]]) == ("dcfab", Owner(12, "34"), True)
    # --dcfire-keep (kept, not reused): a new agent, which ends with its owner.
    kept = Helper(_Engine(), keep_system=True).agent_command()  # type: ignore[arg-type]
    assert kept[:3] == ["python3", "-m", "dcfire_agent"] and "--serve" not in kept
