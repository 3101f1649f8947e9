"""Features and the seeded, rank-sliced batch order.

A feature is a dict: `input_ids` plus the label fields of its task kind (`labels` as an
int or a per-token list, or `start_positions` / `end_positions`). `collate` pads a
micro-batch to its longest row (label lists with -100, which the loss ignores).

The order of one epoch is a permutation drawn from (train.seed, epoch) alone: it does not
depend on the rank, the mask seed or how far a previous run got, so a resumed run sees
exactly the batches the uninterrupted one would have. Each optimizer step takes one
global batch (micro_batch_size x accumulation x world_size features); rank r reads its
rows of every micro-batch. The last partial global batch of an epoch is dropped so every
rank runs the same number of steps (a collective never waits on a rank that has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graddrop_dist.backends.settings import global_batch

from graddrop_dist.tasks.heads import IGNORE_INDEX, Encoded

def collate(data: Encoded, rows: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest row of this micro-batch."""
    features = [data.features[i] for i in rows]
    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    for row, feature in enumerate(features):
        ids[row, :len(feature["input_ids"])] = torch.tensor(feature["input_ids"])
    batch = {"input_ids": ids, "attention_mask": (ids != pad_id).long()}
    for key in features[0]:
        if key == "input_ids":
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list):
            padded = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
            for row, value in enumerate(values):
                padded[row, :len(value)] = torch.tensor(value, dtype=torch.long)
            batch[key] = padded
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


@dataclass(frozen=True)
class BatchPlan:
    examples: int
    micro_batch_size: int
    accumulation: int
    world_size: int
    seed: int

    @property
    def global_batch(self) -> int:
        return global_batch(self.micro_batch_size, self.accumulation, self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        return self.examples // self.global_batch

    def epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.examples, generator=generator).tolist()

    def micro_batches(self, epoch: int, step: int, rank: int) -> list[list[int]]:
        """Row indices of this rank's micro-batches for optimizer step `step` of `epoch`."""
        order = self.epoch_order(epoch)
        start = step * self.global_batch
        micro = self.micro_batch_size * self.world_size
        batches = []
        for m in range(self.accumulation):
            chunk = order[start + m * micro: start + (m + 1) * micro]
            batches.append(chunk[rank * self.micro_batch_size:(rank + 1) * self.micro_batch_size])
        return batches
