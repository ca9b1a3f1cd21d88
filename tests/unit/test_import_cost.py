"""The plugin costs nothing when unused: pytest imports `pytest_dcfire.plugin` in every run of
every project that has it installed, so neither that import nor a whole run without a
topology may load Docker, tenacity, the history checkers, the report or Toxiproxy.

(What the import costs in milliseconds is printed by benchmarks/bench_import.py.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

#: Loaded only when a topology is configured, a test burns (or fails under a burn), checks a
#: history, draws chaos, a report is written or links start.
HEAVY = (
    "docker",
    "tenacity",
    "requests",
    "paramiko",
    "yaml",
    "toxiproxy",
    "pytest_dcfire.history",
    "pytest_dcfire.history.checkers",
    "pytest_dcfire.history.linearizability",
    "pytest_dcfire.drill_workload",
    "pytest_dcfire.chaos.generator",
    "pytest_dcfire.report.failure",
    "pytest_dcfire.report.html",
    "pytest_dcfire.report.terminal",
    "pytest_dcfire.toxiproxy",
    "pytest_dcfire.toxiproxy.server",
    "pytest_dcfire.links",
    "pytest_dcfire.faults.backend",
    "pytest_dcfire.faults.agent",
    "pytest_dcfire.runtime.adopt",
    "pytest_dcfire.runtime.system",
    "pytest_dcfire.runtime.handles",
    "pytest_dcfire.runtime.health",
    "pytest_dcfire.topology.load",
    "pytest_dcfire.topology.model",
    "pytest_dcfire.topology.plan",
    "pytest_dcfire.interrupts",
    "pytest_dcfire.integrity",
)

#: All that `import pytest_dcfire.plugin` may load of the package: what declares the options
#: and the hooks. The fire controller, the evidence, the timeline, the specs, the session
#: and the chaos generator load when a hook or fixture first uses them.
WIRING = {
    "pytest_dcfire",
    "pytest_dcfire.plugin",
    "pytest_dcfire.burn",
    "pytest_dcfire.chaos",
    "pytest_dcfire.chaos.seed",
    "pytest_dcfire.config",
    "pytest_dcfire.errors",
    "pytest_dcfire.hookspecs",
    "pytest_dcfire.lazy",
    "pytest_dcfire.markers",
    "pytest_dcfire.modes",
}

DUMP = f"""
import sys
HEAVY = {HEAVY!r}
loaded = sorted(m for m in HEAVY if m in sys.modules)
print("heavy:", ",".join(loaded) or "none")
"""


def heavy_after(code: str) -> str:
    """Which HEAVY modules a fresh interpreter has loaded after running `code`."""
    out = subprocess.run(
        [sys.executable, "-c", code + DUMP], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()[-1]


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    assert heavy_after("import pytest_dcfire.plugin") == "heavy: none"


def loaded_by(code: str) -> set[str]:
    """The package's modules a fresh interpreter has loaded after running `code`."""
    dump = "import sys\nprint(' '.join(m for m in sys.modules if m.startswith('pytest_dcfire')))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{dump}"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.strip().splitlines()[-1].split())


def test_importing_the_plugin_loads_only_the_wiring() -> None:
    loaded = loaded_by("import pytest_dcfire.plugin")
    assert loaded - WIRING == set()
    assert "pytest_dcfire.plugin" in loaded  # the check sees what was imported


def test_the_wiring_check_sees_a_module_loaded_too_early() -> None:
    """The check above can fail: the fire controller, imported beside the plugin, is caught."""
    loaded = loaded_by("import pytest_dcfire.plugin, pytest_dcfire.fire")
    assert {"pytest_dcfire.fire", "pytest_dcfire.evidence", "pytest_dcfire.timeline"} <= (
        loaded - WIRING
    )


def test_every_public_name_resolves_and_is_listed() -> None:
    """The lazy packages keep their names: each of `__all__` in `dir()` and importable,
    the marker shortcuts equal to pytest's, and a name that is not there an error."""
    code = textwrap.dedent(
        """
        import pytest, pytest_dcfire, pytest_dcfire.chaos as chaos
        for module in (pytest_dcfire, chaos):
            assert set(module.__all__) <= set(dir(module)), module
            for name in module.__all__:
                assert getattr(module, name) is not None, name
        for name in ("dc_fire", "brownout", "partition", "clock", "disk", "flaky_network"):
            assert getattr(pytest_dcfire, name) == getattr(pytest.mark, name), name
        from pytest_dcfire.fire import FireController
        assert pytest_dcfire.FireController is FireController
        assert callable(chaos.chaos) and callable(chaos.targets_of)
        try:
            pytest_dcfire.NoSuchName
        except AttributeError as exc:
            print("missing:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "missing: module 'pytest_dcfire' has no attribute 'NoSuchName'"


def test_the_public_names_import_without_loading_anything_heavy() -> None:
    code = (
        "from pytest_dcfire import dc_fire, brownout, partition, Fire, FireSpec, Recovery, "
        "BrownoutSpec, PartitionSpec, LinkFault, DcfireError, ConfigError"
    )
    assert heavy_after(code) == "heavy: none"


def test_fail_and_indeterminate_still_import_on_first_use() -> None:
    out = heavy_after("from pytest_dcfire import Fail, Indeterminate; print(Fail.__name__)")
    assert "pytest_dcfire.history.checkers" in out  # loaded for them, and only then


def conftest_dump(extra: str = "") -> str:
    """A conftest that prints, at pytest_unconfigure (after the plugin's last hook), whether
    the plugin was configured and which HEAVY modules the whole run loaded."""
    return textwrap.dedent(
        f"""
        import sys
        {extra}
        HEAVY = {HEAVY!r}

        def pytest_unconfigure(config):
            from pytest_dcfire.plugin import SESSION_KEY
            print("dcfire configured:", SESSION_KEY in config.stash)
            loaded = sorted(m for m in HEAVY if m in sys.modules)
            print("heavy:", ",".join(loaded) or "none")
        """
    )


def test_a_run_without_a_topology_loads_nothing_heavy(pytester: pytest.Pytester) -> None:
    """A whole session (collection, a passing and a failing test, the summary) of a suite that
    uses no dcfire feature, in a fresh interpreter."""
    pytester.makeconftest(conftest_dump())
    pytester.makepyfile(
        """
        def test_passes():
            assert 1 + 1 == 2

        def test_fails():
            assert 1 + 1 == 3
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["dcfire configured: True", "heavy: none"])


def test_the_check_sees_a_heavy_module(pytester: pytest.Pytester) -> None:
    """The check above can fail: a conftest that imports docker is caught."""
    pytester.makeconftest(conftest_dump("import docker"))
    pytester.makepyfile("def test_passes():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.stdout.fnmatch_lines(["dcfire configured: True", "heavy: docker*"])


TWO_SITES = """
sites: [pangyo, ansan]
services:
  db:
    site: [pangyo, ansan]
    image: debian:bookworm-slim
"""


def test_a_planned_run_reads_the_markers_the_package_exports(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    """A whole run in a fresh interpreter, through the lazily loaded names: the shortcuts
    decorate, the marker pipeline loads its specs, the plan lists the drills."""
    write_topology(TWO_SITES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import FireController, brownout, dc_fire

        @dc_fire("pangyo")
        def test_burns(dcfire: FireController) -> None:
            raise AssertionError("a plan runs nothing")

        @brownout("ansan", latency=100)
        def test_slow(dcfire: FireController) -> None:
            raise AssertionError("a plan runs nothing")
        """
    )
    result = pytester.runpytest_subprocess("--dcfire-plan", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_burns*pangyo*", "*test_slow*browns out ansan*"])


def test_a_bad_marker_is_still_one_usage_error(
    pytester: pytest.Pytester, write_topology: Callable[..., Path]
) -> None:
    write_topology(TWO_SITES)
    pytester.makeini("[pytest]\ndcfire_topology = topology.yml\n")
    pytester.makepyfile(
        """
        from pytest_dcfire import dc_fire

        @dc_fire("nowhere")
        def test_burns(dcfire):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid dc_fire marker(s):*", "*test_burns*nowhere*"])
