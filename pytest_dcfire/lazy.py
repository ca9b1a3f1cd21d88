"""Public names that load from their modules on first use (PEP 562), for the packages that
every pytest run imports (`pytest_dcfire`, `pytest_dcfire.chaos`): a run that never burns
anything should not pay for the modules behind those names."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str], public: Collection[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`: each name of `where` is imported from
    its submodule (`where[name]`, relative to `package`) when first asked for, then kept in
    the package's namespace so that later lookups skip `__getattr__`."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *public})

    return __getattr__, __dir__
