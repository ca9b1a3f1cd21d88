"""The package's layers point one way, and no import cycle comes back.

Every `import` / `from ... import` of a pytest_dcfire module is an edge, wherever it is: at
the top, inside a function (where a lazy import keeps the plugin cheap, and where a cycle
used to hide) or under `if TYPE_CHECKING:`. The graph must have no cycle, and a module may
import only modules of its own layer or the layers below it (LAYERS, bottom first).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import pytest_dcfire

PACKAGE = "pytest_dcfire"
ROOT = Path(pytest_dcfire.__file__).resolve().parent

#: Bottom first: a module matches the longest prefix (relative to the package; "" is the
#: package itself). Data and validation at the bottom, Docker above them, the faults and the
#: links above Docker, the fire controller above the faults, the session and pytest on top.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("names", ("modes", "lazy")),
    ("base", ("errors", "config", "recovery", "progress", "faults.timing")),
    (
        "models",
        (
            "topology",
            "history",
            "toxiproxy",
            "clockfaults",
            "linkfaults",
            "diskfaults",
            "firespec",
            "steps",
        ),
    ),
    ("records", ("timeline",)),
    ("seams", ("seams",)),
    ("engine", ("runtime",)),
    ("faults", ("faults", "links", "prepare")),
    ("fires", ("evidence", "drill_workload", "chaos", "fire")),
    (
        "session",
        (
            "lifecycle",
            "burn",
            "each_site",
            "markers",
            "xdist_transport",
            "report",
            "session",
            "share",
            "integrity",
            "interrupts",
            "hookspecs",
        ),
    ),
    ("pytest", ("plugin", "")),
)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _target(name: str, imported: str, known: Mapping[str, Path]) -> str:
    """`from name import imported`: the submodule when `imported` is one, else `name`."""
    return f"{name}.{imported}" if f"{name}.{imported}" in known else name


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package upwards
                base = module.split(".")[: len(module.split(".")) - (not is_package)]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == PACKAGE:
                found.update(_target(name, a.name, known) for a in node.names)
    found.discard(module)
    return {m for m in found if m in known}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names `module`."""
    rel = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = rel == prefix or (prefix and rel.startswith(prefix + "."))
            if named and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[1]


def test_the_graph_sees_top_level_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    assert "pytest_dcfire.firespec" in graph["pytest_dcfire.faults.backend"]  # top level
    assert "pytest_dcfire.drill_workload" in graph["pytest_dcfire.fire"]  # in a function
    assert "pytest_dcfire.history.checkers" in graph["pytest_dcfire.evidence"]  # TYPE_CHECKING
    assert "pytest_dcfire.faults.agent.protocol" in graph["pytest_dcfire.faults.helper"]


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_every_module_imports_only_its_own_layer_or_below() -> None:
    graph = import_graph()
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports that point up:\n  " + "\n  ".join(upward)


def test_the_lower_layers_never_import_the_controller_the_session_or_the_plugin() -> None:
    """The rule in one line, whatever LAYERS says: faults/, topology/, history/, runtime/
    and toxiproxy/ know nothing of fire.py, session.py, share.py or plugin.py."""
    top = {f"{PACKAGE}.{name}" for name in ("fire", "session", "share", "plugin")}
    lower = ("faults", "topology", "history", "runtime", "toxiproxy")
    graph = import_graph()
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module.split(".")[1:2] and module.split(".")[1] in lower
        for target in sorted(targets & top)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_find_cycle_finds_a_cycle_and_only_a_cycle(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert find_cycle(graph) == expected


def test_a_new_cycle_would_be_reported(tmp_path: Path) -> None:
    """The parser catches a cycle hidden in a function, as the old fire <-> evidence was."""
    (tmp_path / "one.py").write_text("from pytest_dcfire.two import x\n")
    (tmp_path / "two.py").write_text("def f():\n    from pytest_dcfire.one import y\n")
    known = {"pytest_dcfire.one": tmp_path / "one.py", "pytest_dcfire.two": tmp_path / "two.py"}
    graph = {m: imports_of(m, p, known) for m, p in known.items()}
    assert find_cycle(graph) == ["pytest_dcfire.one", "pytest_dcfire.two", "pytest_dcfire.one"]
