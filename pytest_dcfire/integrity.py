"""No test runs on a half-restored site.

A restore waits for the burnt sites' health checks; when that wait fails (a service that never
comes back, a container that exited or was removed during the fire) or an undo step fails, the
test that burned fails with the reason, and the system is suspect. Before the next test that
uses the system, the gate looks at the fires recorded since it last looked: if one did not end
healthy, it checks those sites' health once more (each service's own health timeout); if they
are still not healthy, that test and every later one that uses the system fail at setup with
one line naming the test whose fire broke it and why, instead of running on a broken site.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dcfire.errors import DcfireError, FireError, StartupError

if TYPE_CHECKING:
    from pytest_dcfire.session import DcfireSession

FIXTURES = ("dcfire_topology", "dcfire")


class Integrity:
    """Registered as a pytest plugin by `plugin.pytest_configure` when a topology is set."""

    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session
        self._seen = 0
        self.broken: str | None = None
        #: Under `dcfire_share = session` (share.py): a file in the controller's lock directory
        #: where a worker that broke the shared copy says so, for every other worker to read.
        self.shared: Path | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
            return
        if self.broken is None and self.shared is not None and self.shared.exists():
            self.broken = self.shared.read_text()
        if self.broken is None:
            self._look()
        if self.broken is not None:
            pytest.fail(f"dcfire: not run on a half-restored system: {self.broken}", pytrace=False)

    def pytest_fixture_post_finalizer(self, fixturedef: Any, request: Any) -> None:
        """With a shared copy, look right after a test's restore (the `dcfire` fixture's end,
        its fire lock still held, the session still up even after the worker's last test):
        another worker's next test must not be the first to find the copy broken."""
        if fixturedef.argname == "dcfire" and self.shared is not None and self.broken is None:
            self._look()

    def _look(self) -> None:
        state = self._session()
        if state is None or state.system is None:
            return
        self.broken = self._check(state)
        if self.broken is not None and self.shared is not None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            self.broken = f"{self.broken} (worker {worker})"
            self.shared.write_text(self.broken)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A failed restore or health wait is a finding about the system, not a bug in the
        test or the plugin: show the test's line and the message, not the plugin's stack."""
        report = yield
        excinfo = call.excinfo
        if report.failed and excinfo is not None and type(excinfo.value) in SHORT:
            report.longrepr = short_repr(item, excinfo)
        return report

    def _check(self, state: DcfireSession) -> str | None:
        records = list(state.timeline)
        fresh, self._seen = records[self._seen :], len(records)
        suspect = [
            r for r in fresh if r.errors or (r.restored is not None and r.healthy_ms is None)
        ]
        if not suspect:
            return None
        sites = list(dict.fromkeys(s for r in suspect for s in r.spec.sites))
        assert state.system is not None  # it burned
        handles = [h for site in sites for h in state.system.in_site(site)]
        try:
            state.system.wait_healthy(handles)
        except DcfireError as exc:
            first = str(exc).splitlines()[0].removesuffix(" Last log lines:")
            return f"after the fire of {', '.join(sites)} in {suspect[-1].test}: {first}"
        return None


#: Errors shown without the plugin's stack (exactly these types: subclasses may mean more).
SHORT = (StartupError, FireError)


def short_repr(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """`path:line: in test` and the statement from the test's own file, then the message."""
    lines: list[str] = []
    mine = [e for e in excinfo.traceback if Path(str(e.path)) == Path(str(item.path))]
    if mine:
        entry = mine[-1]
        lines.append(f"{entry.path}:{entry.lineno + 1}: in {entry.name}")
        lines.append(f"    {str(entry.statement).strip()}")
    else:
        lines.append("(while restoring this test's fires at teardown)")
    name = type(excinfo.value).__name__
    for n, text in enumerate(str(excinfo.value).splitlines()):
        lines.append(f"E   {'dcfire ' + name + ': ' if n == 0 else '    '}{text}")
    return "\n".join(lines)


__all__ = ["Integrity", "short_repr"]
