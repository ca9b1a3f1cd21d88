"""The typed seams (pytest_dcfire/seams.py, pytest_dcfire/modes.py) and the public classes the fixtures return: the
literals agree with what the code accepts, the seams module stays at the bottom of the
layering, and the fixtures' classes are importable from `pytest_dcfire` without Docker."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest

import pytest_dcfire
from pytest_dcfire import modes, seams
from pytest_dcfire.burn import burn_mode
from pytest_dcfire.errors import ConfigError
from pytest_dcfire.firespec import FireSpec
from pytest_dcfire.modes import MODES


@pytest.mark.parametrize(
    ("mode", "network", "storage"), list(itertools.product(MODES, (True, False), (True, False)))
)
def test_every_fire_is_made_of_known_effects(
    mode: modes.Mode, network: bool, storage: bool
) -> None:
    effects = FireSpec(("a",), mode, network, storage).effects()
    assert set(effects) <= set(get_args(modes.Effect)), effects
    assert len(set(effects)) == len(effects)


def test_the_modes_are_the_literal_and_what_the_marker_accepts() -> None:
    assert MODES == ("fire", "power-loss", "crash", "partition", "freeze")  # pinned by SPEC.md
    for mode in MODES:
        assert modes.is_mode(mode)
        assert FireSpec.parse(("a",), {"mode": mode}, ("a",)).mode == mode
        assert burn_mode(mode, None) == mode
    for wrong in ("melt", "Fire", "", None, 1, ("fire",)):
        assert not modes.is_mode(wrong)
    with pytest.raises(ConfigError, match="unknown mode 'melt'"):
        FireSpec.parse(("a",), {"mode": "melt"}, ("a",))


def test_assert_never_names_the_value_it_did_not_expect() -> None:
    with pytest.raises(AssertionError, match="unhandled value: 'lava'"):
        modes.assert_never("lava")  # type: ignore[arg-type]


def _runtime_imports(path: Path) -> list[str]:
    """Modules a file imports when it runs (imports under `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text())
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                out += [alias.name for alias in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.module:
                out.append(sub.module)
    return out


def test_the_modes_import_nothing_of_the_package_and_the_seams_only_the_modes() -> None:
    imported = _runtime_imports(Path(modes.__file__))
    assert imported, "the check must see the module's imports"
    assert not [m for m in imported if m.split(".")[0] in ("pytest_dcfire", "docker", "pytest")]
    imported = _runtime_imports(Path(seams.__file__))
    ours = [m for m in imported if m.split(".")[0] in ("pytest_dcfire", "docker", "pytest")]
    assert ours == ["pytest_dcfire.modes"]


def test_the_fixtures_classes_are_public_and_load_docker_only_when_asked_for() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pytest_dcfire
        assert "docker" not in sys.modules
        from pytest_dcfire import FireController, ServiceHandle, System
        from pytest_dcfire.fire import FireController as F
        from pytest_dcfire.runtime.handles import ServiceHandle as H
        from pytest_dcfire.runtime.system import System as S
        assert (FireController, ServiceHandle, System) == (F, H, S)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert {"FireController", "ServiceHandle", "System", "Mode"} <= set(pytest_dcfire.__all__)


def test_the_fixtures_classes_say_which_fixture_returns_them() -> None:
    from pytest_dcfire import FireController, ServiceHandle, System

    assert "`dcfire` fixture" in (FireController.__doc__ or "")
    assert "`dcfire_topology` fixture" in (System.__doc__ or "")
    assert "dcfire_topology.service(name)" in (ServiceHandle.__doc__ or "")


def test_the_hooks_the_controller_calls_are_hookspecs() -> None:
    from pytest_dcfire import hookspecs
    from pytest_dcfire.fire import FireHook

    assert set(get_args(FireHook)) <= {n for n in dir(hookspecs) if n.startswith("pytest_")}


@pytest.mark.parametrize(
    ("form", "mode"),
    [("embedded", "embedded"), ("image:toxiproxy:2.12.0", "image"), ("url:http://h:8474", "url")],
)
def test_the_toxiproxy_mode_is_the_forms_prefix(form: str, mode: modes.ToxiproxyMode) -> None:
    from pytest_dcfire.config import read_settings

    settings = read_settings({"dcfire_toxiproxy": form}, {}, None, Path("."))
    assert settings.toxiproxy_mode == mode
    assert mode in get_args(modes.ToxiproxyMode)
