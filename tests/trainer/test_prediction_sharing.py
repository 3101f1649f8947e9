"""predict() shares the rows among the ranks in batches of similar length: every rank
computes its part (also of a set smaller than one batch per rank), and every rank ends
with the same predictions as one process computing all rows."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from graddrop_dist.testing.local_ranks import DistributedTest
from graddrop_dist.tasks.heads import Encoded, SequenceKind
from graddrop_dist.trainer.evaluation import predict


class CountingModel(torch.nn.Module):
    """Logits from the token ids (a fixed function of the row), and a count of the rows
    and of the padding positions it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.rows = self.padding = 0

    def forward(self, input_ids, attention_mask, **_):
        self.rows += input_ids.shape[0]
        self.padding += int((attention_mask == 0).sum())
        first = input_ids[:, 1].float()
        logits = torch.stack([first % 3, (first + 1) % 3, (first + 2) % 3], dim=1)
        return SequenceClassifierOutput(logits=logits * self.weight)


def data(rows: int) -> Encoded:
    # Lengths 3..12 in a scrambled order; token 1 is the row's own id (0 is <s>).
    features = [{"input_ids": [0, 5 + i] + [7] * ((i * 7) % 10) + [2], "labels": i % 3}
                for i in range(rows)]
    return Encoded(features=features)


def run(rank: int, world_size: int, rows: int, batch_size: int) -> dict:
    model = CountingModel()
    head = SequenceKind()
    predicted = predict(model, head, data(rows), "accuracy", batch_size=batch_size,
                        pad_id=1, rank=rank, world_size=world_size)
    return {"predicted": predicted, "rows": model.rows, "padding": model.padding}


def test_batches_by_length_pad_less_and_predict_the_same():
    sorted_run = run(0, 1, 200, 16)
    model = CountingModel()
    in_order = predict(model, SequenceKind(), data(200), "accuracy", batch_size=16, pad_id=1,
                       by_length=False)
    assert sorted_run["predicted"] == in_order
    assert sorted_run["padding"] < model.padding / 3


@pytest.mark.distributed
class TestTwoRanks(DistributedTest):
    timeout = 60

    @pytest.mark.parametrize("rows, batch_size", [(100, 512), (101, 8)])
    def test_every_rank_computes_its_share(self, rows, batch_size):
        reference = run(0, 1, rows, batch_size)["predicted"]
        results = self.run(run, rows, batch_size)
        assert all(result["predicted"] == reference for result in results)
        counts = [result["rows"] for result in results]
        per_rank_batch = min(batch_size, -(-rows // 2))
        assert max(counts) - min(counts) <= per_rank_batch  # not all of it on rank 0
        assert sum(counts) - rows <= 2 * per_rank_batch  # padding rows: at most one batch
