"""One pytest session's dcfire state: settings, topology, and (lazily) the running system.

Nothing here starts before a test asks for `dcfire_topology`, so a run that never burns
anything pays nothing for the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pytest_dcfire.config import Settings
from pytest_dcfire.errors import DcfireError
from pytest_dcfire.fire import Timeline
from pytest_dcfire.runtime.engine import Engine, SessionIdentity
from pytest_dcfire.topology.model import Topology

Progress = Callable[[str], None]


class DcfireSession:
    """Owns the engine connection, the system under test, the fault backend and the timeline."""

    def __init__(self, settings: Settings, topology: Topology | None, progress: Progress) -> None:
        self.settings = settings
        self.topology = topology
        self.progress = progress
        self.identity = SessionIdentity.new(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
        self.timeline = Timeline()
        self.engine: Engine | None = None
        self.system: Any = None
        self.faults: Any = None
        self._failure: str | None = None
        self.reaped: str | None = None

    def start(self) -> Any:
        """Start the system under test once; later calls return it (or repeat the failure)."""
        if self.system is not None:
            return self.system
        if self._failure is not None:
            raise DcfireError(self._failure)
        if self.topology is None:
            raise DcfireError(
                "no topology configured: set dcfire_topology in pytest.ini (or pyproject.toml "
                "[tool.pytest.ini_options]) or pass --dcfire-topology PATH"
            )
        try:
            self.system = self._start(self.topology)
        except DcfireError as exc:
            self._failure = str(exc)
            raise
        return self.system

    def _start(self, topology: Topology) -> Any:
        from pytest_dcfire.faults.backend import FaultBackend
        from pytest_dcfire.runtime.reaper import reap_dead_sessions
        from pytest_dcfire.runtime.system import System

        self.engine = Engine.connect(self.identity)
        self.faults = FaultBackend(self.engine, topology, self.progress)
        report = reap_dead_sessions(self.engine.client, thaw=self.faults.thaw_dead)
        if report.sessions:
            self.reaped = str(report)
            self.progress(self.reaped)
        system = System(
            self.engine, topology, self.faults.volumes, self.progress, keep=self.settings.keep
        )
        self.faults.attach(system)
        system.start()
        self.faults.warm()
        return system

    def close(self) -> list[str]:
        """Remove everything (unless --dcfire-keep); return problems to report, never raise."""
        problems: list[str] = []
        if self.system is not None:
            if self.settings.keep:
                self.progress(self.system.keep_instructions())
            else:
                problems += self.system.stop()
        if self.faults is not None and not self.settings.keep:
            problems += self.faults.close()
        elif self.faults is not None:
            problems += self.faults.release()
        if self.engine is not None:
            self.engine.close()
        self.system = None
        return problems
