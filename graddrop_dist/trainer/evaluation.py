"""Evaluation on all ranks at once, with each task's own metric.

Every rank runs the same number of forward passes (sharded models all-gather inside the
forward: a rank that stopped early would hang the others); rows beyond the data are
padding whose outputs are dropped. Each rank turns its outputs into small predictions,
one all_gather_object collects them, and every rank scores the full set.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from graddrop_dist.backends.placement import move_batch
from graddrop_dist.tasks.heads import Encoded
from graddrop_dist.trainer.data import collate
from graddrop_dist.tasks.heads import LABEL_KEYS


@torch.no_grad()
def predict(model, head, data: Encoded, metric: str, *, batch_size: int, pad_id: int,
            rank: int = 0, world_size: int = 1, to_device=None,
            autocast=contextlib.nullcontext, by_length: bool = True) -> dict:
    """{feature row: prediction} for every feature of `data`, on every rank. `to_device`
    moves a batch where the model computes (default: to its parameters' device); outputs
    come back to the CPU before they become predictions. `by_length`: batch rows in order
    of length (benchmarks/eval_batching.py measures what it saves)."""
    if to_device is None:
        device = next(model.parameters()).device
        to_device = lambda batch: move_batch(batch, device)  # noqa: E731
    local = []
    # A set smaller than a batch per rank is shared evenly (otherwise rank 0 would compute
    # all of it while the others run padding rows).
    batch_size = max(1, min(batch_size, -(-len(data) // world_size)))
    per_step = batch_size * world_size
    steps = -(-len(data) // per_step) if len(data) else 0
    # Rows of similar length share a batch, so little of it is padding (short texts of
    # mixed lengths otherwise spend most of a forward pass on padding); predictions are
    # keyed by row, so the order changes nothing else.
    order = sorted(range(len(data)), key=lambda i: len(data.features[i]["input_ids"])) \
        if by_length else list(range(len(data)))
    for step in range(steps):
        # Dealt in turn, so each rank's rows of a step are as long as the others'.
        rows = order[step * per_step:(step + 1) * per_step][rank::world_size]
        real = len(rows)
        batch = collate(data, rows or [0], pad_id)  # keep this rank in step with the others
        for key in LABEL_KEYS:
            batch.pop(key, None)
        with autocast():
            outputs = model(**to_device(batch))
        if real:
            local.extend(head.predictions(outputs_on_cpu(outputs), rows, data, metric))
    if world_size > 1:
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, local)
        local = [item for part in gathered for item in part]
    return dict(local)


def outputs_on_cpu(outputs):
    """The model's output tensors as fp32 on the CPU (one copy per batch)."""
    return type(outputs)(**{key: value.detach().float().cpu()
                            for key, value in outputs.items()
                            if isinstance(value, torch.Tensor)})


def evaluate_languages(backend, head, task, examples: dict, encoded: dict, context, *,
                       files: dict | None = None, **kwargs) -> tuple[dict, dict]:
    """({language: score, "avg": ...} with the task's metric, {metric: {language: score,
    "avg": ...}} for the other metrics its head reports). The model is `backend`'s, run
    on its device with its precision, the rows shared by every rank of `context`. A
    language without labels (a test file released before its labels) is predicted but
    not scored. `files`, when given, receives {language: its predictions in XGLUE's
    format}."""
    model = backend.model
    was_training = model.training
    model.eval()
    by_metric: dict[str, dict] = {}
    for language, data in encoded.items():
        if not examples[language]:
            continue
        predicted = predict(model, head, data, task.metric, rank=context.rank,
                            world_size=context.world_size, to_device=backend.to_device,
                            autocast=backend.autocast, **kwargs)
        if files is not None:
            files[language] = head.prediction_file(task, examples[language], data, predicted)
        if not task.labelled(examples[language]):
            continue
        for metric, value in head.scores(task, examples[language], data, predicted,
                                         language).items():
            by_metric.setdefault(metric, {})[language] = value
    if was_training:
        model.train()
    for scores in by_metric.values():
        scores["avg"] = sum(scores.values()) / len(scores)
    main = by_metric.pop(task.metric, {})
    return main, by_metric
