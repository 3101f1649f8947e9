"""Accuracy per language, computed on all ranks at once.

Every rank runs the same number of forward passes (sharded models all-gather inside the
forward: a rank that stopped early would hang the others); rows beyond the data are
padding whose predictions are ignored. Counts are summed with one all_reduce.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from graddrop_dist.trainer.data import Encoded, collate


@torch.no_grad()
def evaluate_accuracy(model, data: Encoded, *, batch_size: int, pad_id: int, rank: int,
                      world_size: int, autocast_dtype=None) -> tuple[int, int]:
    """(correct, total) over `data`."""
    correct = 0
    per_step = batch_size * world_size
    steps = max(1, -(-len(data) // per_step))
    for step in range(steps):
        start = step * per_step + rank * batch_size
        rows = [i for i in range(start, start + batch_size) if i < len(data)]
        real = len(rows)
        if not rows:  # keep this rank in step with the others
            rows = [0] if len(data) else []
        if not rows:
            continue
        batch = collate(data, rows, pad_id)
        labels = batch.pop("labels")
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**batch).logits
        correct += int((logits.argmax(-1)[:real] == labels[:real]).sum())
    counts = torch.tensor([correct], dtype=torch.long)
    if world_size > 1:
        dist.all_reduce(counts)
    return int(counts[0]), len(data)


def evaluate_languages(model, splits: dict[str, Encoded], **kwargs) -> dict[str, float]:
    """{language: accuracy} for every language with data, plus "avg" over languages."""
    was_training = model.training
    model.eval()
    scores = {}
    for language, data in splits.items():
        correct, total = evaluate_accuracy(model, data, **kwargs)
        if total:
            scores[language] = correct / total
    if was_training:
        model.train()
    if scores:
        scores["avg"] = sum(scores.values()) / len(scores)
    return scores
