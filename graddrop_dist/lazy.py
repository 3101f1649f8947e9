"""Attributes a package offers without importing them until first use (PEP 562), so that
`import graddrop_dist`, the launcher and config validation load no torch."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, where: dict[str, str]):
    """A module `__getattr__` that imports `where[name]` (a module) on first access of
    `name` and returns that module's attribute of the same name."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
