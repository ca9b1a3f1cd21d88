"""What pytest sees of pytest-dcfire: options and ini keys, the fixtures, and hooks that
delegate: the markers to markers.py, the xdist worker's report and tables to
xdist_transport.py, the shared copy to share.py, the session's state to session.py.

The machinery lives in modules named after what they are (topology, runtime, faults, fire,
recovery, report); this module only wires them to pytest. pytest imports it in every run, so
it imports at the top only what declares the options and hooks; the rest is imported by the
hook or fixture that needs it, and what is heavy (Docker, tenacity, the checkers, the report,
Toxiproxy) only when a run uses it (tests/unit/test_import_cost.py; benchmarks/bench_import.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dcfire import burn, hookspecs, markers
from pytest_dcfire.chaos import seed as chaos_seed
from pytest_dcfire.config import (
    INI_ADOPT_COMPOSE,
    INI_KEEP,
    INI_RECOVERY_TIMEOUT,
    INI_REPORT,
    INI_REUSE,
    INI_REUSE_TTL,
    INI_SHARE,
    INI_SITES,
    INI_TOPOLOGY,
    INI_TOXIPROXY,
    OPTION_ADOPT_COMPOSE,
    OPTION_CLEAN,
    OPTION_SHARE,
    TOXIPROXY_FORMS,
    add_adopt_options,
    add_reuse_options,
    read_settings,
    report_path,
)
from pytest_dcfire.errors import ConfigError, DcfireError, TopologyError

if TYPE_CHECKING:  # loaded by the hooks and fixtures that use them
    from pytest_dcfire.config import Settings
    from pytest_dcfire.fire import FireController
    from pytest_dcfire.runtime.adopt import ComposeProject
    from pytest_dcfire.runtime.system import System
    from pytest_dcfire.session import DcfireSession

SESSION_KEY = pytest.StashKey["DcfireSession"]()


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
        "what loses a single-homed dependency) and the drills (each burning test x site), "
        "then exit without starting a container.",
    )
    group.addoption(
        "--dcfire-report",
        dest="dcfire_report",
        metavar="PATH",
        help="write a self-contained HTML report of the fires, workloads and verdicts to PATH "
        f"(overrides the ini key {INI_REPORT}).",
    )
    group.addoption(
        OPTION_SHARE,
        dest="dcfire_share",
        metavar="worker|session",
        default=None,
        help="under pytest-xdist: worker (each worker starts its own copy of the topology, the "
        "default) or session (the xdist controller starts one copy that every worker uses; "
        f"fires are serialised across workers by a lock) (ini: {INI_SHARE}).",
    )
    burn.add_options(group, parser)
    chaos_seed.add_options(group, parser)
    add_adopt_options(group, parser)
    add_reuse_options(group, parser)
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
    parser.addini(INI_REPORT, "path of the HTML report to write, relative to the ini file.")
    parser.addini(
        INI_SHARE,
        "under pytest-xdist: worker (a copy of the topology per worker, default) or session "
        "(one copy shared by every worker, fires serialised).",
        default="worker",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--dcfire-clean removes this user's reusable systems and runs no test."""
    if not config.getoption("dcfire_clean", False):
        return None
    from pytest_dcfire.errors import EngineUnavailable
    from pytest_dcfire.lifecycle import clean

    try:
        clean(lambda line: print(f"dcfire: {line}", flush=True))
    except EngineUnavailable as exc:
        raise pytest.UsageError(f"{OPTION_CLEAN}: {exc}") from None
    return 0


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _settings(config: pytest.Config) -> Settings:
    ini = {
        key: config.getini(key)
        for key in (
            INI_TOPOLOGY,
            INI_RECOVERY_TIMEOUT,
            INI_TOXIPROXY,
            INI_KEEP,
            INI_SHARE,
            INI_REUSE,
            INI_REUSE_TTL,
        )
    }
    cli = {
        "topology": config.getoption("dcfire_topology"),
        "keep": config.getoption("dcfire_keep"),
        "plan": config.getoption("dcfire_plan"),
        "share": config.getoption("dcfire_share"),
        "reuse": config.getoption("dcfire_reuse"),
    }
    inipath = Path(config.inipath) if config.inipath else None
    return read_settings(ini, cli, inipath, Path(config.invocation_params.dir))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from pytest_dcfire import share
    from pytest_dcfire.evidence import session_evidence
    from pytest_dcfire.progress import TerminalProgress
    from pytest_dcfire.session import DcfireSession

    markers.register(config)
    try:
        settings = _settings(config)
        topology = None
        if settings.topology is not None:
            from pytest_dcfire.topology.load import load_topology

            topology = load_topology(settings.topology)
        compose = _adopt_compose(config)
        declared = config.getini(INI_SITES)
        if topology is not None or compose is not None or declared:
            from pytest_dcfire.runtime import adopt

            topology = adopt.resolve_topology(
                topology, compose, declared, _ini_where(config, INI_SITES)
            )
        sites = topology.site_names if topology is not None else ()
        suite_burn = burn.SuiteBurn(
            burn.burn_sites(config.getoption("dcfire_burn"), config.getini(burn.INI_BURN), sites),
            burn.burn_mode(config.getoption("dcfire_burn_mode"), config.getini(burn.INI_MODE)),
        )
        burn_timeout = burn.per_test_timeout(config.getini(burn.INI_TIMEOUT))
        session_evidence(config).report_path = report_path(config)
        chaos_seed.configure(config)
    except (ConfigError, TopologyError) as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.plan and topology is None:
        raise pytest.UsageError(
            "--dcfire-plan needs a topology: set dcfire_topology in pytest.ini, pass "
            "--dcfire-topology PATH, adopt a running compose project (dcfire_adopt_compose) "
            "or declare the sites of adopted containers (dcfire_sites)"
        )
    progress = TerminalProgress(config)
    config.pluginmanager.register(progress, "dcfire-progress")
    state = DcfireSession(
        settings,
        topology,
        progress,
        progress.verbose,
        burn=suite_burn,
        compose=compose,
        hooks=config.hook,
    )
    config.stash[SESSION_KEY] = state
    if suite_burn:
        from pytest_dcfire.report.junit import add_burn_properties

        add_burn_properties(config, suite_burn, compose, settings.share)
        session_evidence(config).burn_label = suite_burn.spec.describe()
        suite_burn.test_timeout, suite_burn.timeout_line = burn.timeout_header(config, burn_timeout)
    # pytest-xdist: the controller may own a copy shared by its workers (share.py).
    if share.is_xdist_controller(config):
        config.pluginmanager.register(share.ShareController(config, state), "dcfire-share")
    if topology is not None:
        from pytest_dcfire.integrity import Integrity
        from pytest_dcfire.interrupts import Guard

        guard = Guard(lambda why: state.close())
        guard.install()
        config.pluginmanager.register(guard, "dcfire-interrupts")
        config.pluginmanager.register(Integrity(lambda: state), "dcfire-integrity")
    share.configure_worker(config, state)  # after Integrity: a shared copy shares its health


def _adopt_compose(config: pytest.Config) -> ComposeProject | None:
    """The compose project to adopt (CLI beats ini), read from the engine at startup."""
    project = config.getoption("dcfire_adopt_compose") or config.getini(INI_ADOPT_COMPOSE)
    if not project or config.option.help:
        return None
    from pytest_dcfire.runtime.adopt import discover_compose

    cli = config.getoption("dcfire_adopt_compose")
    where = OPTION_ADOPT_COMPOSE if cli else INI_ADOPT_COMPOSE
    return discover_compose(str(project), where)


def _ini_where(config: pytest.Config, key: str) -> str:
    """`pytest.ini: dcfire_sites`: where an ini value came from, for error messages."""
    return f"{Path(config.inipath).name}: {key}" if config.inipath else key


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not config.option.dcfire_plan:
        return
    state = config.stash[SESSION_KEY]
    assert state.topology is not None
    from pytest_dcfire import each_site
    from pytest_dcfire.firespec import service_names
    from pytest_dcfire.topology.plan import render_plan

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    assert reporter is not None
    if state.compose is not None:
        planned = state.compose.planned(state.topology)
        lines = render_plan(planned, [m.name for m in state.compose.members]).splitlines()
        lines += state.compose.plan_lines()
    else:
        lines = render_plan(state.topology).splitlines()
    lines += each_site.plan_lines(
        session.items, state.topology.site_names, service_names(state.topology)
    )
    for line in lines:
        reporter.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """With --dcfire-plan nothing runs: the plan is the whole answer."""
    return True if session.config.option.dcfire_plan else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash.get(SESSION_KEY, None)
    if state is not None and state.topology is not None:
        from pytest_dcfire import each_site

        each_site.generate(metafunc, state.topology.site_names)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.topology is None:
        return []
    topo, compose = state.topology, state.compose
    adopted = f", {len(compose.members)} adopted" if compose is not None else ""
    return [
        f"dcfire: topology {topo.source}: sites {', '.join(topo.site_names)}; "
        f"{len(topo.services)} service instance(s){adopted}",
        *(compose.header(topo, state.burn.sites) if compose is not None else []),
        *state.burn.header(),
    ]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Check every fault marker before anything starts; those tests get `dcfire`."""
    state = config.stash[SESSION_KEY]
    markers.check_items(items, state.topology)
    if state.burn:
        burn.request_system(items)
        burn.add_timeouts(items, state.burn.test_timeout)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Apply the test's fault markers after its fixtures, before its body: link faults
    first (a brownout that makes a replica lag must be in place when the fire starts)."""
    if markers.fault_marks(item):
        markers.ignite(item, item.funcargs["dcfire"])  # type: ignore[attr-defined]
    return (yield)


@pytest.fixture(scope="session")
def dcfire_topology(pytestconfig: pytest.Config) -> Iterator[System]:
    """The running system under test (session scope), started from the topology file.

    `.sites`, `.services`, `.service(name)` (handles with `.address(port)`, `.exec(cmd)`,
    `.logs()`, `.container`, `.site`), `.blast_radius(site)`, `.adopt(container, site=...)`
    (a container started elsewhere joins a site; never removed), `.release(handle)` and
    `.reset(service_or_site)` (its containers and volumes made again from scratch).
    """
    state = pytestconfig.stash[SESSION_KEY]
    try:
        system = state.start()
    except DcfireError as exc:
        # from None: one message, not pytest's "During handling..." chain of two
        raise pytest.fail.Exception(f"dcfire: {exc}", pytrace=False) from None
    try:
        yield system
    finally:
        failed = state.burn.restore_quietly()
        _close(state)
        if failed:  # a failed recovery fails the run (a teardown error)
            pytest.fail(f"dcfire: {failed}", pytrace=False)


@pytest.fixture
def dcfire(request: pytest.FixtureRequest, dcfire_topology: System) -> Iterator[FireController]:
    """The fire controller of this test: `fire()`, `restore()`, `burning`, `workload()`,
    `eventually()`, `measure_recovery()`, `schedule(steps)`, `chaos(...)`. Everything it
    burned is restored at teardown, always; its workloads' verdicts go to the report and the
    JUnit properties."""
    from pytest_dcfire.evidence import DrillEvidence, session_evidence
    from pytest_dcfire.fire import FireController

    state = request.config.stash[SESSION_KEY]
    evidence = DrillEvidence(request.node.nodeid)
    session_evidence(request.config).add(evidence)
    controller = FireController(
        dcfire_topology,
        state.make_step,
        state.timeline,
        state.settings.recovery_timeout,
        hooks=request.config.hook,
        item=request.node,
        links=state.links,
        evidence=evidence,
    )
    controller.also_dark = state.burn.burning
    controller.dark_elsewhere = state.burn.held_ids
    try:
        yield controller
    finally:
        try:
            controller.restore()
        finally:
            controller.evidence.finish(request.config.hook, request.node)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each burning test's outcome for the report (outermost: xfail is already applied)."""
    from pytest_dcfire.evidence import session_evidence

    report = yield
    evidence = session_evidence(item.config)
    evidence.outcome(report)
    state = item.config.stash.get(SESSION_KEY, None)
    # Both sections are empty unless the suite burns or the test has its `dcfire`.
    if state is not None and (state.burn or "dcfire" in getattr(item, "funcargs", {})):
        from pytest_dcfire.report.failure import dark_section, under_burn

        if report.failed:
            section = dark_section(state.burn, item)
            if section:
                report.sections.append(("dcfire: dark while this test ran", section))
        under_burn(evidence, state.burn, report)
    drill = evidence.drills.get(item.nodeid)
    if drill is not None and drill.seeds and report.when == "call":
        _print_seeds(report, drill.seeds)
    return report


def _print_seeds(report: pytest.TestReport, seeds: list[int]) -> None:
    """The chaos seeds in the failure message (or the test's report section) for replay."""
    text = "\n".join(
        f"dcfire.chaos seed {seed}: replay with {chaos_seed.OPTION_SEED} {seed}"
        for seed in dict.fromkeys(seeds)
    )
    addsection = getattr(report.longrepr, "addsection", None)  # pytest's ExceptionRepr
    if report.failed and addsection is not None:
        addsection("dcfire chaos", text)
    else:
        report.sections.append(("dcfire chaos", text))


def _terminal_tables(state: DcfireSession) -> tuple[list[str], list[str]]:
    """This process's fire and link-fault tables (empty lists when nothing burned)."""
    if not len(state.timeline) and not state.timeline.link_faults:
        return [], []  # and the report's code stays unloaded
    from pytest_dcfire.report.terminal import fire_table, link_fault_table

    fires = fire_table(state.timeline) if len(state.timeline) else []
    links = link_fault_table(state.timeline.link_faults) if state.timeline.link_faults else []
    return fires, links


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    from pytest_dcfire.evidence import session_evidence

    tables = [("", _terminal_tables(state))]
    tables += sorted(session_evidence(config).worker_tables.items())
    for worker, (fires, link_faults) in tables:
        suffix = f" ({worker})" if worker else ""
        if fires:
            terminalreporter.section(f"dcfire: fires{suffix}")
            for line in fires:
                terminalreporter.write_line(line)
        if link_faults:
            terminalreporter.section(f"dcfire: link faults{suffix}")
            for line in link_faults:
                terminalreporter.write_line(line)
    written = session_evidence(config).report_path
    if written is not None and not hasattr(config, "workerinput"):
        terminalreporter.write_line(f"dcfire: report written to {written}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: keep a worker's share of the report for the controller's one file."""
    from pytest_dcfire import xdist_transport
    from pytest_dcfire.evidence import session_evidence

    xdist_transport.receive(node, session_evidence(node.config))


def _close(state: DcfireSession) -> None:
    for problem in state.close():
        state.progress(f"cleanup problem: {problem}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A safety net: the session fixture normally closes everything already."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None and session.config.option.dcfire_plan:
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a plan of no test is still a plan
        return
    if state is None:
        return
    from pytest_dcfire import xdist_transport
    from pytest_dcfire.evidence import session_evidence

    evidence = session_evidence(session.config)
    xdist_transport.send_tables(session.config, lambda: _terminal_tables(state))
    # An xdist worker sends its part of the report: the controller writes the one file.
    path = evidence.report_path
    if path is not None and not xdist_transport.send_report(
        session.config, evidence, state.timeline
    ):
        from pytest_dcfire.report.html import write_report

        try:
            write_report(path, evidence, state.timeline, evidence.shares)
        except OSError as exc:
            state.progress(f"could not write the report {path}: {exc}")
    _close(state)
