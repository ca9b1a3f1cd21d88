"""What pytest sees of pytest-dcfire: options and ini keys, the marker, the fixtures, hooks.

The machinery lives in modules named after what they are (topology, runtime, faults, fire,
recovery, report); this module only wires them to pytest.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dcfire import hookspecs
from pytest_dcfire.config import (
    INI_KEEP,
    INI_RECOVERY_TIMEOUT,
    INI_TOPOLOGY,
    INI_TOXIPROXY,
    TOXIPROXY_FORMS,
    read_settings,
)
from pytest_dcfire.errors import ConfigError, DcfireError, TopologyError
from pytest_dcfire.fire import MODES, FireController, FireSpec
from pytest_dcfire.session import DcfireSession

SESSION_KEY = pytest.StashKey[DcfireSession]()
MARKER_HELP = (
    "dc_fire(*sites, mode='fire', network=True, storage=True): burn SITES during this test: "
    "their containers' network is blackholed and their storage frozen after the test's "
    "fixtures are set up, and restored (health-checked) afterwards. "
    f"Modes: {', '.join(MODES)}."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dcfire", "disaster-recovery fires (pytest-dcfire)")
    group.addoption(
        "--dcfire-topology",
        dest="dcfire_topology",
        metavar="PATH",
        help="topology YAML or docker-compose file of the system under test "
        f"(overrides the ini key {INI_TOPOLOGY}).",
    )
    group.addoption(
        "--dcfire-keep",
        dest="dcfire_keep",
        action="store_true",
        default=False,
        help="keep containers, networks and volumes after the session and print how to "
        f"remove them (ini: {INI_KEEP}).",
    )
    group.addoption(
        "--dcfire-plan",
        dest="dcfire_plan",
        action="store_true",
        default=False,
        help="print the start waves and the blast radius of every site (what goes dark, "
        "what loses a single-homed dependency), then exit without starting a container.",
    )
    parser.addini(
        INI_TOPOLOGY, "path of the topology YAML or docker-compose file, relative to the ini file."
    )
    parser.addini(
        INI_RECOVERY_TIMEOUT,
        "default seconds for dcfire.eventually and dcfire.measure_recovery (default 60).",
        default="60",
    )
    parser.addini(
        INI_TOXIPROXY,
        f"the Toxiproxy server for links: {TOXIPROXY_FORMS} (default embedded).",
        default="embedded",
    )
    parser.addini(
        INI_KEEP, "keep the system after the session (true/false, default false).", default="false"
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _settings(config: pytest.Config) -> Any:
    ini = {
        key: config.getini(key)
        for key in (INI_TOPOLOGY, INI_RECOVERY_TIMEOUT, INI_TOXIPROXY, INI_KEEP)
    }
    cli = {
        "topology": config.getoption("dcfire_topology"),
        "keep": config.getoption("dcfire_keep"),
        "plan": config.getoption("dcfire_plan"),
    }
    inipath = Path(config.inipath) if config.inipath else None
    return read_settings(ini, cli, inipath, Path(config.invocation_params.dir))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = _settings(config)
        topology = None
        if settings.topology is not None:
            from pytest_dcfire.topology.load import load_topology

            topology = load_topology(settings.topology)
    except (ConfigError, TopologyError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = DcfireSession(settings, topology, _progress_writer(config))


def _progress_writer(config: pytest.Config) -> Any:
    """Lines that reach the terminal even while pytest captures a fixture's output."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"dcfire: {line}")
        else:
            reporter.write_line(f"dcfire: {line}")

    return write


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.option.dcfire_plan:
        return None
    config._do_configure()
    try:
        state = config.stash[SESSION_KEY]
        if state.topology is None:
            raise pytest.UsageError(
                "--dcfire-plan needs a topology: set dcfire_topology in pytest.ini or pass "
                "--dcfire-topology PATH"
            )
        from pytest_dcfire.topology.plan import render_plan

        reporter = config.pluginmanager.get_plugin("terminalreporter")
        assert reporter is not None
        for line in render_plan(state.topology).splitlines():
            reporter.write_line(line)
    finally:
        config._ensure_unconfigure()
    return 0


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.topology is None:
        return []
    topo = state.topology
    return [
        f"dcfire: topology {topo.source}: sites {', '.join(topo.site_names)}; "
        f"{len(topo.services)} service instance(s)"
    ]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Check every dc_fire marker before anything starts; burning tests get `dcfire`."""
    state = config.stash[SESSION_KEY]
    sites = state.topology.site_names if state.topology is not None else ()
    problems = []
    for item in items:
        markers = list(item.iter_markers("dc_fire"))
        if not markers:
            continue
        for mark in markers:
            try:
                FireSpec.parse(mark.args, mark.kwargs, sites, where=f"@dc_fire{_call(mark)}")
            except ConfigError as exc:
                problems.append(f"{item.nodeid}: {exc}")
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "dcfire" not in fixturenames:
            fixturenames.append("dcfire")
    if problems:
        raise pytest.UsageError("invalid dc_fire marker(s):\n  " + "\n  ".join(problems))


def _call(mark: pytest.Mark) -> str:
    args = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"({', '.join(args)})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Ignite the test's dc_fire markers after its fixtures, before its body."""
    markers = list(item.iter_markers("dc_fire"))
    if markers:
        controller: FireController = item.funcargs["dcfire"]  # type: ignore[attr-defined]
        specs = [FireSpec.parse(m.args, m.kwargs, controller.system.sites) for m in markers]
        controller.ignite_together(specs)
    return (yield)


@pytest.fixture(scope="session")
def dcfire_topology(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The running system under test (session scope), started from the topology file.

    `.sites`, `.services`, `.service(name)` (handles with `.address(port)`, `.exec(cmd)`,
    `.logs()`, `.container`, `.site`), `.blast_radius(site)`.
    """
    state = pytestconfig.stash[SESSION_KEY]
    try:
        system = state.start()
    except DcfireError as exc:
        pytest.fail(f"dcfire: {exc}", pytrace=False)
    try:
        yield system
    finally:
        _close(state)


@pytest.fixture
def dcfire(request: pytest.FixtureRequest, dcfire_topology: Any) -> Iterator[FireController]:
    """The fire controller of this test: `fire()`, `restore()`, `eventually()`,
    `measure_recovery()`. Everything it burned is restored at teardown, always."""
    state = request.config.stash[SESSION_KEY]
    controller = FireController(
        dcfire_topology,
        state.make_step,
        state.timeline,
        state.settings.recovery_timeout,
        hooks=request.config.hook,
        item=request.node,
        links=state.links,
    )
    try:
        yield controller
    finally:
        controller.restore()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or not len(state.timeline):
        return
    from pytest_dcfire.report.terminal import fire_table

    terminalreporter.section("dcfire: fires")
    for line in fire_table(state.timeline):
        terminalreporter.write_line(line)


def _close(state: DcfireSession) -> None:
    for problem in state.close():
        state.progress(f"cleanup problem: {problem}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A safety net: the session fixture normally closes everything already."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None:
        _close(state)
