"""DeepSpeed JSON with one source of truth: values the trainer owns are "auto" in the JSON
and filled in here; a concrete value that disagrees with the trainer is an error naming
the file and the key (DeepSpeed would otherwise silently train with the other value).
`deepspeed_config` is the whole filling; the backend (backends/deepspeed.py) only uses it."""

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


def owned_values(settings, world_size: int) -> dict:
    """The DeepSpeed JSON values the trainer owns (dotted key -> value): "auto" is filled
    in, another value is an error."""
    return {"train_micro_batch_size_per_gpu": settings.micro_batch_size,
            "gradient_accumulation_steps": settings.accumulation,
            "train_batch_size": settings.global_batch(world_size),
            "gradient_clipping": settings.max_grad_norm,
            "bf16.enabled": settings.precision == "bf16",
            "fp16.enabled": settings.precision == "fp16",
            "optimizer.params.lr": settings.lr,
            "optimizer.params.weight_decay": settings.weight_decay,
            "scheduler.params.warmup_max_lr": settings.lr}


def schedule_values(settings) -> dict:
    """The schedule's length: "auto" is filled in from the trainer, a number is the
    JSON's own choice (a longer decay, a fixed warmup)."""
    return {"scheduler.params.warmup_num_steps": settings.warmup_steps,
            "scheduler.params.total_num_steps": settings.total_steps}


def deepspeed_config(source: str | Path | dict, settings, world_size: int) -> dict:
    """The filled config from a JSON file (or an already-read dict)."""
    name = "ds_config" if isinstance(source, dict) else str(source)
    config = copy.deepcopy(source) if isinstance(source, dict) else read_ds_config(source)
    if not isinstance(config, dict):
        raise ValueError(f"{name}: the top level must be a JSON object")
    if settings.precision in ("bf16", "fp16"):  # a missing section would mean fp32
        section = config.setdefault(settings.precision, {})
        if isinstance(section, dict):
            section.setdefault("enabled", "auto")
    return fill_ds_config(config, owned_values(settings, world_size), source=name,
                          fill_only=schedule_values(settings))


def offloads_optimizer(config: dict) -> bool:
    offload = (config.get("zero_optimization") or {}).get("offload_optimizer") or {}
    return offload.get("device") in ("cpu", "nvme")
