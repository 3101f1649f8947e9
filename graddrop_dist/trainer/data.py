"""Tokenized examples and the seeded, rank-sliced batch order.

The order of one epoch is a permutation drawn from (train.seed, epoch) alone: it does not
depend on the rank, the mask seed or how far a previous run got, so a resumed run sees
exactly the batches the uninterrupted one would have. Each optimizer step takes one
global batch (micro_batch_size x accumulation x world_size examples); rank r reads its
rows of every micro-batch. The last partial global batch of an epoch is dropped so every
rank runs the same number of steps (a collective never waits on a rank that has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graddrop_dist.tasks.base import Example


@dataclass
class Encoded:
    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, examples: list[Example], max_length: int) -> Encoded:
    if not examples:
        return Encoded([], [])
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    encoded = tokenizer(texts, pairs if any(p is not None for p in pairs) else None,
                        truncation=True, max_length=max_length)
    return Encoded(list(encoded["input_ids"]), [e.label for e in examples])


def collate(data: Encoded, rows: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest row of this micro-batch."""
    longest = max(len(data.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    for row, index in enumerate(rows):
        sequence = data.input_ids[index]
        ids[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long(),
            "labels": torch.tensor([data.labels[i] for i in rows], dtype=torch.long)}


@dataclass(frozen=True)
class BatchPlan:
    examples: int
    micro_batch_size: int
    accumulation: int
    world_size: int
    seed: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.accumulation * self.world_size

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
