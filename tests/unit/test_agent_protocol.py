"""The agent package as the helper image carries it: stdlib only, every op of the protocol
handled exactly once, and an image tag that changes with any file of it."""

from __future__ import annotations

import ast
import io
import shutil
import sys
from pathlib import Path

import pytest

from pytest_dcfire.faults import helper
from pytest_dcfire.faults.agent import dispatch, protocol
from pytest_dcfire.faults.agent.agent import Agent

AGENT = Path(protocol.__file__).parent


def test_the_agent_imports_nothing_but_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted(AGENT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                continue  # relative: inside the package, whatever its name in the image
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] in stdlib, f"{path.name} imports {name}"


def test_every_op_has_exactly_one_handler(tmp_path: Path) -> None:
    agent = Agent("s0test", io.StringIO(), root=str(tmp_path))
    agent.undone = True
    assert sorted(agent.handlers) == sorted(protocol.OPS)
    assert all(op.name == name for name, op in protocol.OPS.items())


def test_a_missing_or_unknown_handler_stops_the_agent() -> None:
    with pytest.raises(RuntimeError, match="ops without a handler"):
        dispatch.handlers(object())

    class Stray:
        @dispatch.handles(protocol.Op[protocol.Empty, protocol.Empty]("no_such_op"))
        def op(self, request: protocol.Empty) -> protocol.Empty:
            return request

    with pytest.raises(RuntimeError, match="no_such_op"):
        dispatch.handlers(Stray())


def test_image_tag_changes_with_any_file_of_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "agent"
    shutil.copytree(AGENT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(helper, "AGENT_DIR", copy)
    names = [name for name, _ in helper.image_files()]
    assert names[0] == "Dockerfile"
    assert f"{protocol.AGENT_MODULE}/reap.py" in names
    assert f"{protocol.AGENT_MODULE}/__main__.py" in names
    before = helper.helper_image_tag()
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    assert helper.helper_image_tag() == before  # bytecode caches are not part of it
    (copy / "reap.py").write_text((copy / "reap.py").read_text() + "\n")
    edited = helper.helper_image_tag()
    assert edited != before
    (copy / "extra.py").write_text("")
    assert helper.helper_image_tag() not in (before, edited)


def test_an_op_is_declared_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        protocol.declare("cut")
