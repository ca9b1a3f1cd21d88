"""Health checks (tcp, http, cmd) and the tenacity-driven wait for them.

Used after start and again after every restore, so that one test's fire never leaks into the
next test: a service is only handed back once its check passes.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from pytest_dcfire.errors import StartupError
from pytest_dcfire.topology.model import HealthCheck

if TYPE_CHECKING:
    from pytest_dcfire.runtime.handles import ServiceHandle


class Unhealthy(Exception):
    """One failed probe; the wait retries it until the service's timeout."""


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
            raise Unhealthy(f"tcp {host}:{port}: {exc}") from None
        return
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", check.path)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise Unhealthy(f"GET http://{host}:{port}{check.path}: {exc}") from None
    finally:
        conn.close()
    if not 200 <= status < 400:
        raise Unhealthy(f"GET http://{host}:{port}{check.path} answered {status}")


def wait_healthy(handle: ServiceHandle, timeout: float | None = None) -> HealthResult:
    """Block until the handle's health check passes, or raise StartupError saying why not.

    A service without a health check is healthy once its container runs.
    """
    check = handle.spec.healthcheck
    limit = timeout if timeout is not None else (check.timeout if check else 30.0)
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
            probe(handle, check)

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
        raise StartupError(
            _failure(
                handle,
                f"not healthy ({check.describe() if check else 'running'}): {last}",
                started,
                attempts,
            )
        ) from None
    return HealthResult(handle.name, time.monotonic() - started, attempts)


def _exited(handle: ServiceHandle, state: str) -> str:
    """`exited (exit code 137, OOM-killed)`: what the engine knows about why it stopped."""
    info = (getattr(handle.container, "attrs", None) or {}).get("State") or {}
    code = info.get("ExitCode")
    detail = [f"exit code {code}"] if code is not None else []
    if info.get("OOMKilled"):
        detail.append("OOM-killed")
    return f"is {state}" + (f" ({', '.join(detail)})" if detail else "")


def _failure(handle: ServiceHandle, why: str, started: float, attempts: int) -> str:
    waited = time.monotonic() - started
    logs = handle.logs(tail=20).rstrip()
    shown = "\n".join("    " + line for line in logs.splitlines()) or "    (no output)"
    return (
        f"service {handle.name} (site {handle.site}) {why}; waited {waited:.1f} s, "
        f"{attempts} attempt(s). Last log lines:\n{shown}"
    )
