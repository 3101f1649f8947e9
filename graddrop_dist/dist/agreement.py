"""Ranks agree before the first step, or every rank raises the same one-line error.

At attach every rank contributes what decides its masks: the GradDrop config, the world
size, the starting step, the parameter names and full shapes, and the mask code version;
rank 0 also contributes the seed it drew when `seed` is null. One all_gather_object is the
only collective, so a disagreement cannot hang: every rank sees the same table and raises.
`verify_every=K` repeats a cheaper check on the masks themselves every K optimizer steps.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import torch.distributed as dist

from graddrop_dist.mask import keep_mask

_KERNEL_SOURCES = [Path(__file__).parent.parent / "mask" / name
                   for name in ("counter_hash.py", "_kernel.c")]


class RankDisagreement(RuntimeError):
    """Ranks would draw different masks; raised on every rank."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def mask_code_version() -> str:
    return _digest(b"".join(path.read_bytes() for path in _KERNEL_SOURCES))


def _describe_difference(field: str, values: list[Any]) -> str:
    groups: dict[str, list[int]] = {}
    for rank, value in enumerate(values):
        groups.setdefault(repr(value), []).append(rank)
    parts = [f"rank{'s' if len(ranks) > 1 else ''} {','.join(map(str, ranks))}={value}"
             for value, ranks in groups.items()]
    return f"{field}: " + "; ".join(parts)


def first_disagreement(gathered: list[dict[str, Any]]) -> str | None:
    """'field: ranks 0,2=a; rank 1=b' for every field that differs, or None."""
    differences = []
    for field in gathered[0]:
        values = [entry.get(field) for entry in gathered]
        if any(value != values[0] for value in values[1:]):
            differences.append(_describe_difference(field, values))
    return " | ".join(differences) or None


def gather_objects(payload: dict[str, Any], group=None) -> list[dict[str, Any]]:
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, payload, group=group)
    return gathered


def agree_at_attach(graddrop, adapter) -> int:
    """Check agreement; return the seed every rank must use (rank 0's)."""
    group = adapter.process_group()
    config = graddrop.config
    drawn = secrets.randbelow(2**63) if config.seed is None else config.seed
    shapes = "|".join(f"{name}:{plan.shape}" for name, plan in graddrop.plans.items())
    payload = {
        **{f"graddrop.{key}": value for key, value in config.to_dict().items()},
        "backend": adapter.backend,
        "world_size": dist.get_world_size(group),
        "start_step": graddrop.step,
        "steps_per_epoch": graddrop.steps_per_epoch,
        "parameters": f"{len(graddrop.plans)} tensors, digest {_digest(shapes.encode())}",
        "mask_code": mask_code_version(),
    }
    gathered = gather_objects({**payload, "_seed": drawn}, group)
    difference = first_disagreement([{k: v for k, v in entry.items() if k != "_seed"}
                                     for entry in gathered])
    if difference:
        raise RankDisagreement(f"graddrop: ranks disagree before the first step: {difference}")
    return gathered[0]["_seed"]


def mask_fingerprint(graddrop, step: int, sample: int = 4096) -> str:
    """Digest of the first `sample` keep bits of every masked parameter at `step`."""
    digest = hashlib.sha256()
    for name, plan in graddrop.plans.items():
        stream, rate = graddrop.schedule(name, step)
        if rate == 0.0:
            continue
        bits = keep_mask(min(plan.numel, sample), seed=graddrop.config.seed, stream=stream,
                         name=name, drop_rate=rate,
                         block=plan.block(graddrop.config.granularity))
        digest.update(f"{name}:{stream}:{rate!r}:".encode())
        digest.update(bits.numpy().tobytes())
    return digest.hexdigest()[:16]


def verify_masks(graddrop, adapter, step: int) -> None:
    gathered = gather_objects({"mask fingerprint": mask_fingerprint(graddrop, step), "step": step},
                       adapter.process_group())
    difference = first_disagreement(gathered)
    if difference:
        raise RankDisagreement(f"graddrop: masks diverged at optimizer step {step}: "
                               f"{difference}")


def raise_on_disagreement(payload: dict[str, Any], what: str, group=None) -> list[dict]:
    """Gather `payload` from every rank; raise RankDisagreement naming fields and ranks."""
    gathered = gather_objects(payload, group)
    difference = first_disagreement(gathered)
    if difference:
        raise RankDisagreement(f"graddrop: ranks disagree {what}: {difference}")
    return gathered


__all__ = ["RankDisagreement", "agree_at_attach", "verify_masks", "mask_fingerprint",
           "first_disagreement", "gather_objects", "raise_on_disagreement"]
