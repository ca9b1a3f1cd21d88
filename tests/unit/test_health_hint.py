"""What a refused health port's message says about the ports the container listens on,
read from /proc/net/tcp text (pure logic; the real container is in tests/docker)."""

from __future__ import annotations

from typing import Any

from pytest_dcfire.runtime.health import listening_hint, listening_ports

TABLES = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 020011AC:1B59 030011AC:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 0 1
   3: 0B00007F:B67F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0 0 0
"""


class Handle:
    def __init__(self, answer: tuple[int, str] | Exception) -> None:
        self.answer = answer

    def exec(self, cmd: Any) -> tuple[int, str]:
        assert cmd == ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_listening_sockets_with_loopback_named_and_the_engines_dns_left_out() -> None:
    assert listening_ports(TABLES) == [("", 7001), ("", 8080), ("127.0.0.1", 9000)]


def test_hint_names_the_other_ports() -> None:
    assert listening_hint(Handle((0, TABLES)), 7000) == (  # type: ignore[arg-type]
        "; the container listens on 7001, 8080, 127.0.0.1:9000, not on 7000: is the health "
        "check's port the one the service listens on?"
    )


def test_hint_for_a_loopback_only_listener_and_for_nothing_listening() -> None:
    assert "only on loopback: bind it to 0.0.0.0" in listening_hint(
        Handle((0, TABLES)),  # type: ignore[arg-type]
        9000,
    )
    empty = TABLES.splitlines()[0] + "\n"
    assert listening_hint(Handle((0, empty)), 7000) == (  # type: ignore[arg-type]
        "; nothing in the container listens on a TCP port (yet)"
    )
    assert listening_hint(Handle((0, TABLES)), 8080) == ""  # type: ignore[arg-type]  # listens there by now


def test_no_hint_when_the_image_cannot_read_proc() -> None:
    no_cat = (126, 'OCI runtime exec failed: exec: "cat": executable file not found')
    assert listening_hint(Handle(no_cat), 7000) == ""  # type: ignore[arg-type]
    assert listening_hint(Handle(RuntimeError("engine gone")), 7000) == ""  # type: ignore[arg-type]
