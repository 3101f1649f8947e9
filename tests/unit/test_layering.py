"""Imports go one way (docs/architecture.md): foundations, the method, the trainer's
backends, the job. A module never imports one of a later group."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GROUPS = [  # module prefixes, in import order (docs/architecture.md)
    ("graddrop_dist.ranks", "graddrop_dist.fs", "graddrop_dist.versions",
     "graddrop_dist.typed_config", "graddrop_dist.cli_errors", "graddrop_dist.recipes",
     "graddrop_dist.ds_configs", "graddrop_dist.lazy"),
    ("graddrop_dist.mask", "graddrop_dist.config", "graddrop_dist.variants",
     "graddrop_dist.adapters", "graddrop_dist.algorithm", "graddrop_dist.testing"),
    ("graddrop_dist.backends", "graddrop_dist.parallel"),
    ("graddrop_dist.tasks", "graddrop_dist.assets", "graddrop_dist.trainer",
     "graddrop_dist.study", "graddrop_dist.integrations", "graddrop_launcher"),
]


def group_of(module: str) -> int | None:
    for index, prefixes in enumerate(GROUPS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def modules():
    for path in sorted((REPO / "graddrop_dist").rglob("*.py")):
        yield ".".join(path.relative_to(REPO).with_suffix("").parts), path
    for path in sorted((REPO / "launcher").rglob("*.py")):
        yield "graddrop_launcher." + path.stem, path


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda v: str(v))
def test_no_module_imports_a_later_group(module, path):
    mine = group_of(module)
    if mine is None:  # graddrop_dist/__init__.py: the public API, above everything
        return
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            theirs = group_of(name)
            assert theirs is None or theirs <= mine, f"{module} imports {name}"
