"""DeepSpeed JSON with one source of truth: values the trainer owns are "auto" in the JSON
and filled in here; a concrete value that disagrees with the trainer is an error naming
the file and the key (DeepSpeed would otherwise silently train with the other value)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


def _walk(config: dict, dotted: str):
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return None, leaf
    return node, leaf


def fill_ds_config(config: dict[str, Any], owned: dict[str, Any], *,
                   source: str = "ds_config",
                   fill_only: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of `config` with every owned value filled in or checked.

    owned: dotted key -> the trainer's value, e.g. {"optimizer.params.lr": 2e-5}. Keys
    absent from the JSON are added at the top level only (nested sections the user left
    out stay out: an `optimizer` section is the user's choice, and so is its absence).
    fill_only: values that replace "auto" but leave any other value alone.
    """
    filled = copy.deepcopy(config)
    if not isinstance(filled, dict):
        raise ValueError(f"{source}: the top level must be a JSON object")
    for dotted, value in (fill_only or {}).items():
        node, leaf = _walk(filled, dotted)
        if node is not None and node.get(leaf) == "auto":
            node[leaf] = value
    for dotted, value in owned.items():
        node, leaf = _walk(filled, dotted)
        if node is None:
            continue
        if leaf not in node:
            if "." not in dotted:
                node[leaf] = value
            continue
        found = node[leaf]
        if found == "auto":
            node[leaf] = value
        elif found != value and not (isinstance(found, (int, float))
                                     and isinstance(value, (int, float))
                                     and float(found) == float(value)):
            raise ValueError(f"{source}: {dotted} is {found!r} but the trainer config says "
                             f"{value!r}; set it to \"auto\" or to the same value")
    leftover = [key for key, value in _flatten(filled) if value == "auto"]
    if leftover:
        raise ValueError(f"{source}: no trainer value fills \"auto\" at {', '.join(leftover)}")
    return filled


def _flatten(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def read_ds_config(path: str | Path) -> Any:
    """A DeepSpeed JSON: a shipped one by name (`zero3`, graddrop_dist/recipes) or a file."""
    from graddrop_dist.recipes import ds_config_file, ds_config_names

    path = ds_config_file(path)
    if not path.exists() and not str(path).endswith(".json"):
        raise ValueError(f"backend.ds_config: {str(path)!r} is neither a file nor a shipped "
                         f"DeepSpeed config ({', '.join(ds_config_names())})")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"backend.ds_config: file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
