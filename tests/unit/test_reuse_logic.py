"""Pure logic of the runtime's teardown and of --dcfire-reuse: no Docker."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pytest_dcfire.config import parse_ttl, read_settings
from pytest_dcfire.errors import ConfigError
from pytest_dcfire.lifecycle import Teardown
from pytest_dcfire.runtime.engine import (
    L_BOOT,
    L_HOST,
    L_PID,
    L_REUSE_BOOT,
    RETAIN_REUSE,
    SessionIdentity,
)
from pytest_dcfire.runtime.reuse import Fingerprint, Record


def test_teardown_undoes_in_reverse_and_a_failed_step_stops_nothing() -> None:
    done: list[str] = []
    teardown = Teardown("remove")

    def engine() -> None:
        done.append("engine")

    teardown.push("engine", engine)
    teardown.push("faults", lambda: [f"faults problem after {done}"])

    def broken() -> None:
        done.append("system")
        raise RuntimeError("boom")

    teardown.push("system", broken)
    problems = teardown.close()
    assert done == ["system", "engine"]
    assert problems == ["system: boom", "faults problem after ['system']"]
    assert teardown.close() == []  # closed once; a second close undoes nothing again


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600.0), ("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0)]
)
def test_reuse_ttl_forms(text: str, seconds: float) -> None:
    assert parse_ttl("dcfire_reuse_ttl", text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0", "1w"])
def test_a_bad_reuse_ttl_names_the_key_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"dcfire_reuse_ttl = .* \(90s, 30m, 1h, 2d\)"):
        parse_ttl("dcfire_reuse_ttl", text)


def test_keep_wins_over_reuse() -> None:
    ini = {"dcfire_reuse": "true"}
    both = read_settings(ini, {"keep": True}, None, Path("."))
    assert both.keep and not both.reuse
    reuse = read_settings(ini, {}, None, Path("."))
    assert reuse.reuse and reuse.reuse_ttl == 3600.0


def _print(**changes: object) -> Fingerprint:
    base: dict[str, object] = {
        "topology": "t1",
        "images": {"db": "sha256:a", "api": "sha256:b"},
        "plugin": "1.0",
        "helper": "h1",
        "toxiproxy": "embedded",
    }
    base.update(changes)
    return Fingerprint(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"topology": "t2"}, "the topology file changed"),
        ({"images": {"db": "sha256:z", "api": "sha256:b"}}, "the image of service db changed"),
        ({"images": {"db": "sha256:a"}}, "service api was added or removed"),
        ({"plugin": "1.1"}, "pytest-dcfire changed (1.0 -> 1.1)"),
        ({"helper": "h2"}, "the dcfire helper image changed"),
    ],
)
def test_a_fingerprint_says_what_differs(changed: dict[str, object], reason: str) -> None:
    kept = _print()
    assert kept.difference(_print()) is None
    difference = kept.difference(_print(**changed))
    assert difference is not None and difference.startswith(reason)
    assert Fingerprint.from_json(kept.to_json()) == kept


def _record(last_used: float, ttl: float, pid: int) -> Record:
    labels = {
        L_HOST: socket.gethostname(),
        L_PID: str(pid),
        L_BOOT: "",
        L_REUSE_BOOT: SessionIdentity.new().pid_start if pid == SessionIdentity.new().pid else "1",
    }
    return Record("dcf1", "k", "me", last_used, ttl, _print(), [], labels)


def test_a_record_protects_while_in_use_or_young() -> None:
    now = time.time()
    me = SessionIdentity.new().pid
    assert _record(now - 10, 5, me).protects(now)  # in use by a live process
    dead = 2**22 + 1  # beyond any pid_max: no such process
    assert _record(now - 10, 60, dead).protects(now)  # young
    assert not _record(now - 10, 5, dead).protects(now)  # expired, nobody uses it


def test_a_reusable_system_hides_its_start_time_from_pid_only_cleanups() -> None:
    identity = SessionIdentity.new(retain=RETAIN_REUSE)
    labels = identity.labels("service")
    assert labels[L_BOOT] == "" and labels[L_REUSE_BOOT] == identity.pid_start
    assert not SessionIdentity.is_dead(labels)  # its own process is alive
    resumed = SessionIdentity.new().resumed("dcfkept1")
    assert resumed.id == "dcfkept1" and resumed.retain == RETAIN_REUSE
    assert resumed.foreign_labels({**labels, L_PID: "1"}, "service") != []  # other session
    theirs = {**resumed.labels("service"), L_PID: "1", L_REUSE_BOOT: "x"}
    assert resumed.foreign_labels(theirs, "service") == []  # made by an earlier process


class _Images:
    """The engine's images as the fingerprint asks for them: every lookup counted."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, ref: str) -> object:
        self.asked.append(ref)
        return type("Image", (), {"id": f"sha256:{ref}"})()


def test_services_of_one_image_cost_one_lookup_and_each_keeps_its_own_entry(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from pytest_dcfire.runtime.reuse import fingerprint
    from pytest_dcfire.topology.load import load_topology

    services = "".join(
        f"  s{i}:\n    site: a\n    image: {'other:1' if i == 2 else 'debian:bookworm-slim'}\n"
        for i in range(4)
    )
    path = tmp_path / "topology.yml"
    path.write_text("sites: [a]\nservices:\n" + services)
    images = _Images()
    engine = SimpleNamespace(client=SimpleNamespace(images=images))
    printed = fingerprint(engine, load_topology(path), "embedded", "1.0", "helper:1")  # type: ignore[arg-type]
    assert sorted(images.asked) == ["debian:bookworm-slim", "other:1"]
    assert printed.images == {
        "s0": "sha256:debian:bookworm-slim",
        "s1": "sha256:debian:bookworm-slim",
        "s2": "sha256:other:1",
        "s3": "sha256:debian:bookworm-slim",
    }


def test_a_reusable_owner_described_to_xdist_workers_keeps_its_retention() -> None:
    """Workers attached to a reusable shared copy check its containers as the controller
    does: without the pid labels of whichever process made them."""
    owner = SessionIdentity.new(retain=RETAIN_REUSE)
    described = SessionIdentity.from_dict(owner.to_dict())
    assert described == owner
    made_by_another_run = {**owner.labels("service"), L_PID: "1", L_REUSE_BOOT: "2"}
    assert described.foreign_labels(made_by_another_run, "service") == []
