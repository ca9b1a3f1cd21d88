"""The plugin costs nothing when unused: pytest imports `pytest_dcfire.plugin` in every run of
every project that has it installed, so neither that import nor a whole run without a
topology may load Docker, tenacity, the history checkers, the report or Toxiproxy.

(What the import costs in milliseconds is printed by benchmarks/bench_import.py.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Loaded only when a topology is configured, a test burns, checks a history, a report is
#: written or links start.
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
