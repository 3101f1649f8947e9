"""train.evaluate=selected keeps the best epoch's weights and puts them back before the
test sets are scored: on every backend, the model after `restore_weights` computes exactly
what it computed when `snapshot_weights` was taken, although training moved it since."""

from __future__ import annotations

import pytest
import torch
from backend_runs import attach, setup
from scenario import graddrop_config, micro_batches

from graddrop_dist import GradDrop
from graddrop_dist.testing.local_ranks import DistributedTest

# Each way a backend stores a rank's weights: a replica (single, ddp), original parameters
# as views of a flat shard (fsdp1-full), flat parameters (fsdp1-grad-op), DTensor shards
# (fsdp2), a replica with partitioned optimizer state (zero2), ds_tensor shards (zero3).
BACKENDS = ["ddp", "fsdp1-full", "fsdp1-grad-op", "fsdp2", "zero2", "zero3"]


def _logits(run, batch) -> torch.Tensor:
    run.model.eval()
    with torch.no_grad():
        logits = run.model(**run.to_device(batch)).logits.float().cpu()
    run.model.train()
    return logits


def snapshot_train_restore(rank: int, world_size: int, backend: str) -> dict:
    run = setup(backend, world_size)
    attach(run, GradDrop(graddrop_config({"method": "graddrop"})))
    steps = micro_batches(rank, world_size)
    probe = steps[0][0]
    run.train_step(steps[0])
    at_snapshot, snapshot = _logits(run, probe), run.snapshot_weights()
    parameters_at_snapshot = run.full_parameters()
    for micro in steps[1:]:
        run.train_step(micro)
    moved = _logits(run, probe)
    run.restore_weights(snapshot)
    restored, parameters = _logits(run, probe), run.full_parameters()
    run.close()
    return {"at_snapshot": at_snapshot, "moved": moved, "restored": restored,
            "same_parameters": all(torch.equal(parameters[n], parameters_at_snapshot[n])
                                   for n in parameters)}


def check(result: dict) -> None:
    assert not torch.equal(result["moved"], result["at_snapshot"])  # training moved it
    assert torch.equal(result["restored"], result["at_snapshot"])
    assert result["same_parameters"]


def test_one_process_restores_the_snapshot():
    check(snapshot_train_restore(0, 1, "single"))


def test_a_snapshot_of_other_parameters_is_refused():
    run = setup("single", 1)
    snapshot = run.snapshot_weights()
    snapshot.pop(next(iter(snapshot)))
    with pytest.raises(ValueError, match="restore_weights: the snapshot holds other"):
        run.restore_weights(snapshot)


@pytest.mark.distributed
class TestEveryBackendRestoresItsOwnPart(DistributedTest):
    timeout = 180

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_restored_model_computes_what_it_did_at_the_snapshot(self, backend):
        for result in self.run(snapshot_train_restore, backend):
            check(result)
