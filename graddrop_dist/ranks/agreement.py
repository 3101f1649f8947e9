"""Ranks agree, or every rank raises the same one-line error.

Each rank contributes a payload (field -> value) of what must be equal everywhere: the
job's config and data, or what decides GradDrop's masks. One all_gather_object is the only
collective, so a disagreement cannot hang: every rank sees the same table and raises
RankDisagreement naming each field that differs and which ranks hold which value.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


class RankDisagreement(RuntimeError):
    """Ranks would train differently; raised on every rank."""


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


def raise_on_disagreement(payload: dict[str, Any], problem: str, group=None,
                          carry: Any = None) -> list[dict]:
    """Gather `payload` from every rank; raise RankDisagreement ("graddrop: {problem}:
    field: rank 0=a; rank 1=b") naming the fields and ranks that differ. `carry` travels
    along without being compared: gathered[0]["carry"] is rank 0's."""
    gathered = gather_objects({"payload": payload, "carry": carry}, group)
    difference = first_disagreement([entry["payload"] for entry in gathered])
    if difference:
        raise RankDisagreement(f"graddrop: {problem}: {difference}")
    return gathered


__all__ = ["RankDisagreement", "first_disagreement", "gather_objects",
           "raise_on_disagreement"]
