"""Health checks (tcp, http, cmd) and the tenacity-driven wait for them.

Used after start and again after every restore, so that one test's fire never leaks into the
next test: a service is only handed back once its check passes.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from pytest_dcfire.errors import StartupError
from pytest_dcfire.topology.model import HealthCheck

if TYPE_CHECKING:
    from pytest_dcfire.runtime.handles import ServiceHandle


class Unhealthy(Exception):
    """One failed probe; the wait retries it until the service's budget is spent."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        #: The port refused the connection: nothing listens there (a hint is worth finding).
        self.refused = refused


class ContainerExited(Exception):
    """The container stopped: waiting longer cannot help."""


@dataclass(frozen=True)
class HealthResult:
    service: str
    waited_s: float
    attempts: int


def probe(handle: ServiceHandle, check: HealthCheck) -> None:
    """Run one probe of `check` against `handle`; raise Unhealthy with the reason if it fails."""
    if check.kind == "cmd":
        code, output = handle.exec(list(check.cmd))
        if code != 0:
            raise Unhealthy(f"`{' '.join(check.cmd)}` exited {code}: {output.strip()[-200:]}")
        return
    assert check.port is not None
    host, port = handle.direct_address(check.port)
    if check.kind == "tcp":
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if not handle.engine_local:
                    # Through a published port the engine's proxy accepts even when nothing
                    # listens behind it, then closes: a quiet moment means a real listener.
                    sock.settimeout(0.05)
                    try:
                        if sock.recv(1) == b"":
                            raise Unhealthy(f"tcp {host}:{port} closed at once")
                    except TimeoutError:
                        pass
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            raise Unhealthy(f"tcp {host}:{port}: {exc}", refused) from None
        return
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", check.path)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        refused = isinstance(exc, ConnectionRefusedError)
        raise Unhealthy(f"GET http://{host}:{port}{check.path}: {exc}", refused) from None
    finally:
        conn.close()
    if not 200 <= status < 400:
        raise Unhealthy(f"GET http://{host}:{port}{check.path} answered {status}")


#: Seconds of refused health probes before `notice` hears what the container listens on.
EARLY_HINT_AFTER = 5.0


def wait_healthy(
    handle: ServiceHandle,
    timeout: float | None = None,
    notice: Callable[[str], None] | None = None,
) -> HealthResult:
    """Block until the handle's health check passes, or raise StartupError saying why not.

    A service without a health check is healthy once its container runs. When the health
    port still refuses after EARLY_HINT_AFTER s while the container listens on other ports,
    `notice` hears it once, so a wrong port is not a silent wait of the whole budget.
    """
    check = handle.spec.healthcheck
    limit = timeout if timeout is not None else (check.budget if check else 30.0)
    interval = check.interval if check else 0.1
    started = time.monotonic()
    attempts = 0

    def once() -> None:
        nonlocal attempts
        attempts += 1
        state = handle.state()
        if state == "removed":
            raise ContainerExited("its container was removed (not by dcfire)")
        if state not in ("running", "paused"):
            raise ContainerExited(f"its container {_exited(handle, state)}")
        if check is not None:
            try:
                probe(handle, check)
            except Unhealthy as exc:
                early_hint(exc)
                raise

    noticed = False

    def early_hint(exc: Unhealthy) -> None:
        nonlocal noticed
        if noticed or notice is None or not exc.refused or check is None or not check.port:
            return
        waited = time.monotonic() - started
        if waited < EARLY_HINT_AFTER or waited >= limit:
            return
        noticed = True
        hint = listening_hint(handle, check.port)
        if hint and "(yet)" not in hint:  # nothing listening yet: it may still be starting
            notice(
                f"{handle.name}: health port {check.port} still refused after {waited:.0f} s"
                f"{hint} (waiting up to {limit:g} s)"
            )

    retrying = Retrying(
        stop=stop_after_delay(limit),
        wait=wait_fixed(interval),
        retry=retry_if_exception_type(Unhealthy),
    )
    try:
        retrying(once)
    except ContainerExited as exc:
        raise StartupError(_failure(handle, str(exc), started, attempts)) from None
    except RetryError as exc:
        last = exc.last_attempt.exception()
        hint = ""
        if isinstance(last, Unhealthy) and last.refused and check is not None and check.port:
            hint = listening_hint(handle, check.port)
        raise StartupError(
            _failure(
                handle,
                f"not healthy ({check.describe() if check else 'running'}): {last}{hint}",
                started,
                attempts,
                limit if timeout is None else None,
            )
        ) from None
    return HealthResult(handle.name, time.monotonic() - started, attempts)


#: /proc/net/tcp state of a listening socket.
_LISTEN = "0A"
#: Docker's embedded DNS server listens inside every container of a user network.
DOCKER_DNS = "127.0.0.11"


def listening_ports(tables: str) -> list[tuple[str, int]]:
    """(address, port) of every listening socket in /proc/net/tcp and tcp6 text."""
    found: dict[tuple[str, int], None] = {}
    for line in tables.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN or ":" not in fields[1]:
            continue
        address, _, port = fields[1].rpartition(":")
        try:
            number = int(port, 16)
        except ValueError:
            continue
        host = ""  # every address, or one the service chose: reachable from outside
        if len(address) == 8:  # IPv4, little-endian hex
            ip = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            if ip == DOCKER_DNS:
                continue  # the engine's resolver, not the service
            if ip.startswith("127."):
                host = ip
        elif address == "00000000000000000000000001000000":
            host = "::1"
        found[(host, number)] = None
    return sorted(found, key=lambda item: (item[1], item[0]))


def listening_hint(handle: ServiceHandle, port: int) -> str:
    """Why a health port refuses: what the container listens on instead, read from its
    /proc/net/tcp (through exec; '' when the image has no `cat` to read it with)."""
    try:
        code, tables = handle.exec(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    except Exception:  # a hint is never worth a second failure
        return ""
    if code != 0 and "local_address" not in tables:
        return ""
    ports = listening_ports(tables)
    if not ports:
        return "; nothing in the container listens on a TCP port (yet)"
    if any(p == port and not host for host, p in ports):
        return ""  # it listens there now: the refusal was earlier
    if any(p == port for _, p in ports):
        return (
            f"; the container listens on port {port} only on loopback: bind it to 0.0.0.0 so "
            "that the health check (and the tests) can reach it"
        )
    shown = ", ".join(f"{host}:{p}" if host else str(p) for host, p in ports)
    return (
        f"; the container listens on {shown}, not on {port}: is the health check's port "
        "the one the service listens on?"
    )


def _exited(handle: ServiceHandle, state: str) -> str:
    """`exited (exit code 137, OOM-killed)`: what the engine knows about why it stopped."""
    info = (getattr(handle.container, "attrs", None) or {}).get("State") or {}
    code = info.get("ExitCode")
    detail = [f"exit code {code}"] if code is not None else []
    if info.get("OOMKilled"):
        detail.append("OOM-killed")
    return f"is {state}" + (f" ({', '.join(detail)})" if detail else "")


def _failure(
    handle: ServiceHandle, why: str, started: float, attempts: int, budget: float | None = None
) -> str:
    waited = time.monotonic() - started
    logs = handle.logs(tail=20).rstrip()
    shown = "\n".join("    " + line for line in logs.splitlines()) or "    (no output)"
    of = f" of its {budget:g} s budget (healthcheck.budget)" if budget is not None else ""
    return (
        f"service {handle.name} (site {handle.site}) {why}; waited {waited:.1f} s{of}, "
        f"{attempts} attempt(s). Last log lines:\n{shown}"
    )
