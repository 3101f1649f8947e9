"""Evaluation on all ranks at once, with each task's own metric.

Every rank runs the same number of forward passes (sharded models all-gather inside the
forward: a rank that stopped early would hang the others); rows beyond the data are
padding whose outputs are dropped. Each rank turns its outputs into small predictions,
one all_gather_object collects them, and every rank scores the full set.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from graddrop_dist.trainer.data import Encoded, collate
from graddrop_dist.trainer.kinds import LABEL_KEYS


@torch.no_grad()
def predict(model, kind, data: Encoded, metric: str, *, batch_size: int, pad_id: int,
            rank: int, world_size: int, autocast_dtype=None) -> dict:
    """{feature row: prediction} for every feature of `data`, on every rank."""
    local = []
    per_step = batch_size * world_size
    steps = -(-len(data) // per_step) if len(data) else 0
    for step in range(steps):
        start = step * per_step + rank * batch_size
        rows = [i for i in range(start, start + batch_size) if i < len(data)]
        real = len(rows)
        batch = collate(data, rows or [0], pad_id)  # keep this rank in step with the others
        for key in LABEL_KEYS:
            batch.pop(key, None)
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(**batch)
        if real:
            local.extend(kind.predictions(outputs, rows, data, metric))
    if world_size > 1:
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, local)
        local = [item for part in gathered for item in part]
    return dict(local)


def evaluate_languages(model, kind, task, examples: dict, encoded: dict, **kwargs) -> dict:
    """{language: score} with the task's metric, plus "avg" over languages."""
    was_training = model.training
    model.eval()
    scores = {}
    for language, data in encoded.items():
        if not examples[language]:
            continue
        predicted = predict(model, kind, data, task.metric, **kwargs)
        scores[language] = kind.score(task, examples[language], data, predicted, language)
    if was_training:
        model.train()
    if scores:
        scores["avg"] = sum(scores.values()) / len(scores)
    return scores
