"""The messenger's chaos suite: what survives a fire in pangyo, and what does not.

Run it against the original topology (auth in pangyo only) and the login test is an expected
failure, as the plan predicts; run it with `--dcfire-topology topology-fixed.yml` (auth in
both sites) and the same test passes.
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from typing import Any

import pytest

from pytest_dcfire import RecoveryTimeout, dc_fire

Address = tuple[str, int]


def request(
    addr: Address,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 3.0,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def login(addr: Address, user: str, timeout: float = 3.0) -> str:
    status, answer = request(
        addr, "POST", "/login", {"user": user, "password": f"{user}-password"}, timeout=timeout
    )
    assert status == 200, f"login of {user} via {addr}: {status} {answer}"
    return str(answer["token"])


def send(addr: Address, token: str, room: str, text: str) -> dict[str, Any]:
    status, answer = request(addr, "POST", f"/rooms/{room}/messages", {"text": text}, token=token)
    assert status == 201, f"send to {room}: {status} {answer}"
    return dict(answer)


def texts(addr: Address, room: str) -> list[str]:
    status, answer = request(addr, "GET", f"/rooms/{room}/messages")
    assert status == 200, f"read {room}: {status} {answer}"
    return [m["text"] for m in answer]


@pytest.fixture
def pangyo(dcfire_topology) -> Address:
    return dcfire_topology.service("api@pangyo").address(8080)


@pytest.fixture
def ansan(dcfire_topology) -> Address:
    return dcfire_topology.service("api@ansan").address(8080)


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def alice_token(pangyo) -> str:
    """Alice logged in before anything burned (fixtures run before a marker ignites)."""
    return login(pangyo, "alice")


def test_a_message_sent_in_pangyo_is_read_in_ansan(pangyo, ansan, alice_token, room):
    stored = send(pangyo, alice_token, room, "hello")
    assert stored["replicated"], stored  # both sites had it before the send was acknowledged
    assert texts(ansan, room) == ["hello"]


@dc_fire("pangyo")
def test_logged_in_users_keep_chatting_from_ansan(dcfire, pangyo, ansan, alice_token, room):
    """Tokens are signed, so ansan checks them without auth: existing sessions survive."""
    with pytest.raises((TimeoutError, socket.timeout)):
        request(pangyo, "GET", "/health", timeout=0.5)  # pangyo is dark
    stored = send(ansan, alice_token, room, "is anyone there?")
    assert not stored["replicated"]  # store@pangyo is unreachable: ansan queues for it
    assert texts(ansan, room) == ["is anyone there?"]


def test_messages_acknowledged_before_the_fire_survive_it(dcfire, pangyo, ansan, alice_token, room):
    """Synchronous replication: every acknowledged message is in ansan when pangyo burns."""
    sent = [f"before the fire {n}" for n in range(20)]
    for text in sent:
        assert send(pangyo, alice_token, room, text)["replicated"]
    with dcfire.fire("pangyo"):
        assert texts(ansan, room) == sent


def test_pangyo_catches_up_after_restore(dcfire, pangyo, ansan, alice_token, room):
    """What ansan accepted during the fire reaches pangyo's store once pangyo is back."""
    with dcfire.fire("pangyo"):
        during = [f"during the fire {n}" for n in range(5)]
        for text in during:
            send(ansan, alice_token, room, text)
    dcfire.eventually(lambda: texts(pangyo, room) == during)


@pytest.fixture
def login_expected_down(request, dcfire_topology) -> None:
    """Where the plan says a pangyo fire strands api@ansan, this test is an expected failure.

    The reason is the plan's own words, so the xfail documents the hazard; strict=True makes
    the suite fail the day the hazard stops showing (or the plan stops predicting it).
    """
    radius = dcfire_topology.blast_radius("pangyo")
    for stranded in radius.stranded:
        if stranded.name == "api@ansan":
            request.applymarker(
                pytest.mark.xfail(
                    strict=True,
                    raises=RecoveryTimeout,  # failing any other way is a real failure
                    reason=f"login is down everywhere when pangyo burns: api@ansan {stranded.reason()}",
                )
            )


@dc_fire("pangyo")
def test_users_can_log_in_while_pangyo_burns(
    dcfire, dcfire_topology, login_expected_down, pangyo, ansan
):
    """The KakaoTalk test: pangyo is on fire; can bob still log in (through ansan)?"""
    recovery = dcfire.measure_recovery(lambda: login(ansan, "bob"), timeout=5)
    assert recovery.rto < 5, recovery
    with pytest.raises((TimeoutError, socket.timeout)):
        login(pangyo, "bob", timeout=0.5)  # and pangyo's own api is dark
