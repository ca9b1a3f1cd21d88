"""What a killed session's helper removes, and when: the janitor's sweep against a fake
engine (only the session's own objects, never adopted ones, the helper last), how the
owner's death is judged, how dockerd's socket is found, and the agent's command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire.faults.agent.__main__ import parse_args
from pytest_dcfire.faults.agent.dockerapi import (
    L_ADOPTED,
    L_ROLE,
    L_SESSION,
    EngineError,
    dockerd_sockets,
)
from pytest_dcfire.faults.agent.janitor import sweep
from pytest_dcfire.faults.agent.procs import start_token
from pytest_dcfire.faults.agent.watchdog import Owner, wait_owner_gone
from pytest_dcfire.faults.helper import Helper
from pytest_dcfire.runtime.engine import L_ON_OWNER_DEATH, SessionIdentity

S = "dcf1234abcd"


def labels(role: str, session: str = S, **extra: str) -> dict[str, str]:
    return {L_SESSION: session, L_ROLE: role, **extra}


class FakeEngine:
    """Answers list calls as the engine's label filter would, records every DELETE."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], busy: int = 0) -> None:
        self.objects = objects
        self.deleted: list[str] = []
        self.busy = busy  # how many times a volume removal answers 409 (still in use)

    def list(self, kind: str, session: str) -> list[dict[str, Any]]:
        return [o for o in self.objects[kind] if o["Labels"].get(L_SESSION) == session]

    def call(self, method: str, url: str, body: Any = None, **query: Any) -> Any:
        assert method == "DELETE", method
        if url.startswith("/volumes/") and self.busy:
            self.busy -= 1
            raise EngineError(409, "volume is in use")
        if url.endswith("gone"):
            raise EngineError(404, "no such object")
        self.deleted.append(url)
        return None


def world() -> FakeEngine:
    return FakeEngine(
        {
            "containers": [
                {"Id": "helper0", "Labels": labels("helper")},
                {"Id": "svc1", "Labels": labels("service")},
                {"Id": "svc2", "Labels": labels("service")},
                {"Id": "janitor0", "Labels": labels("janitor")},
                {"Id": "adopted", "Labels": labels("service", **{L_ADOPTED: "1"})},
                {"Id": "other", "Labels": labels("service", session="dcf99999999")},
                {"Id": "gone", "Labels": labels("service")},
            ],
            "volumes": [
                {"Name": "pool", "Labels": labels("pool")},
                {"Name": "state", "Labels": labels("state")},
                {"Name": "theirs", "Labels": labels("pool", session="dcf99999999")},
            ],
            "networks": [
                {"Id": "n1", "Name": "net", "Labels": labels("network")},
                {"Id": "n2", "Name": "theirs", "Labels": labels("network", session="x")},
            ],
        }
    )


def test_sweep_removes_the_session_only_helper_after_services_then_volumes_networks() -> None:
    engine = world()
    removed, problems = sweep(engine, S, sleep=lambda s: None)  # type: ignore[arg-type]
    assert problems == []
    deleted = engine.deleted
    assert set(deleted[:2]) == {"/containers/svc1", "/containers/svc2"}
    assert deleted[2] == "/containers/helper0"
    assert set(deleted[3:5]) == {"/volumes/pool", "/volumes/state"}
    assert deleted[5:] == ["/networks/n1"]
    assert len(removed) == 6


def test_sweep_waits_for_a_volume_still_in_use() -> None:
    engine = world()
    engine.busy = 3
    _, problems = sweep(engine, S, sleep=lambda s: None)  # type: ignore[arg-type]
    assert problems == []
    assert {"/volumes/pool", "/volumes/state"} <= set(engine.deleted)


def test_sweep_from_the_agent_spares_its_helper_and_state() -> None:
    engine = world()
    sweep(engine, S, spare_roles=("helper", "state"), sleep=lambda s: None)  # type: ignore[arg-type]
    assert "/containers/helper0" not in engine.deleted
    assert "/volumes/state" not in engine.deleted
    assert "/containers/svc1" in engine.deleted and "/volumes/pool" in engine.deleted


def test_sweep_refuses_a_bad_session_id() -> None:
    with pytest.raises(ValueError, match="bad session id"):
        sweep(world(), "", sleep=lambda s: None)  # type: ignore[arg-type]


def test_dockerd_sockets_from_its_command_line() -> None:
    assert dockerd_sockets(["dockerd"]) == ["/var/run/docker.sock", "/run/docker.sock"]
    argv = ["dockerd", "-H", "unix:///srv/d.sock", "--host=tcp://0.0.0.0:2375", "-H=fd://"]
    assert dockerd_sockets(argv)[0] == "/srv/d.sock"
    assert "/var/run/docker.sock" in dockerd_sockets(argv)


def fake_proc(tmp_path: Path, pid: int, start: str, state: str = "S") -> str:
    fields = [state] + ["0"] * 18 + [start] + ["0"] * 10  # field 22 is the start time
    (tmp_path / str(pid)).mkdir(exist_ok=True)
    (tmp_path / str(pid) / "stat").write_text(f"{pid} (py test) " + " ".join(fields))
    return str(tmp_path)


def test_owner_alive_only_with_its_start_time(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 4242, "777")
    assert start_token(4242, proc) == "777"
    assert Owner(4242, "777").alive(proc)
    assert not Owner(4242, "778").alive(proc)  # the pid was recycled
    assert not Owner(4343, "777").alive(proc)
    fake_proc(tmp_path, 4242, "777", state="Z")  # killed, not yet waited for by its parent
    assert not Owner(4242, "777").alive(proc)
    assert Owner.parse("4242:777") == Owner(4242, "777")
    assert Owner.parse("4242") is None and Owner.parse("a:1") is None


def test_a_visible_owner_is_waited_for_until_it_dies(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 4242, "777")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 5:
            (tmp_path / "4242" / "stat").unlink()  # the owner dies

    why = wait_owner_gone(Owner(4242, "777"), True, grace=10.0, sleep=sleep, proc=proc)
    assert why == "pid 4242 is gone" and len(slept) == 5 and sum(slept) < 1


def test_an_owner_never_seen_gets_a_grace_period(tmp_path: Path) -> None:
    slept: list[float] = []
    why = wait_owner_gone(Owner(4242, "777"), False, grace=10.0, sleep=slept.append)
    assert slept == [10.0] and "no new agent within 10 s" in why
    wait_owner_gone(None, False, grace=3.0, sleep=slept.append)
    assert slept[-1] == 3.0


def test_agent_arguments() -> None:
    assert parse_args(["m", "dcfab"]) == ("dcfab", None, False)
    assert parse_args(["m", "dcfab", "--owner", "12:34", "--keep"]) == (
        "dcfab",
        Owner(12, "34"),
        True,
    )
    with pytest.raises(SystemExit, match="bad --owner"):
        parse_args(["m", "dcfab", "--owner", "x"])
    with pytest.raises(SystemExit, match="usage"):
        parse_args(["m"])


class _Engine:
    def __init__(self) -> None:
        self.session = SessionIdentity("dcfab", "host", 12, "34")


@pytest.mark.parametrize(("keep", "label"), [(False, "remove"), (True, "undo-faults")])
def test_helper_tells_its_agent_and_labels_what_a_death_does(keep: bool, label: str) -> None:
    helper = Helper(_Engine(), keep_system=keep)  # type: ignore[arg-type]
    assert helper.labels()[L_ON_OWNER_DEATH] == label
    command = helper.agent_command()
    assert command[3:6] == ["dcfab", "--owner", "12:34"]
    assert ("--keep" in command) is keep
    assert parse_args(["m", *command[3:]]) == ("dcfab", Owner(12, "34"), keep)
