"""Ranks that would draw different masks fail at attach (or at the next verification),
on every rank, with one line naming the ranks and the field; nothing hangs."""

from __future__ import annotations

import pytest
import torch

from backend_runs import attach, setup, train_cases
from graddrop_dist import GradDrop
from graddrop_dist.ranks.agreement import RankDisagreement
from graddrop_dist.testing.local_ranks import DistributedTest
from scenario import MASKED_CASES, graddrop_config


def attach_with(rank, world_size, backend, per_rank_overrides, start_steps=(0, 0)):
    """Attach on every rank with its own config; return each rank's error or its seed."""
    run = setup(backend, world_size)
    graddrop = GradDrop(graddrop_config(dict(method="graddrop")).replace(
        **per_rank_overrides[rank]))
    graddrop.set_step(start_steps[rank])
    try:
        attach(run, graddrop)
    except RankDisagreement as error:
        return "error", str(error)
    finally:
        run.close()
    return "ok", graddrop.config.seed


@pytest.mark.distributed
class TestAgreementAtAttach(DistributedTest):
    @pytest.mark.parametrize("backend", ["ddp", "fsdp1-full", "fsdp2", "zero3"])
    def test_different_drop_rates_fail_on_every_rank(self, backend):
        results = self.run(attach_with, backend, [dict(drop_rate=0.5), dict(drop_rate=0.3)])
        for status, message in results:
            assert status == "error"
            assert "graddrop.drop_rate: rank 0=0.5; rank 1=0.3" in message
            assert "\n" not in message

    def test_different_seeds_and_start_steps_are_named(self):
        results = self.run(attach_with, "ddp", [dict(seed=1), dict(seed=2)], (0, 7))
        for status, message in results:
            assert status == "error"
            assert "graddrop.seed: rank 0=1; rank 1=2" in message
            assert "start_step: rank 0=0; rank 1=7" in message

    def test_null_seed_is_drawn_on_rank_zero_and_shared(self):
        results = self.run(attach_with, "fsdp2", [dict(seed=None), dict(seed=None)])
        (status0, seed0), (status1, seed1) = results
        assert status0 == status1 == "ok"
        assert seed0 == seed1 and isinstance(seed0, int)


def sabotage_rank_one_seed(rank, world_size):
    run = setup("ddp", world_size)
    graddrop = attach(run, GradDrop(graddrop_config(dict(method="graddrop")).replace(
        verify_every=2)))
    if rank == 1:
        graddrop.config = graddrop.config.replace(seed=99)
    from scenario import micro_batches

    try:
        for step, micro in enumerate(micro_batches(rank, world_size)):
            run.train_step(micro)
    except RankDisagreement as error:
        return step, str(error)
    finally:
        run.close()
    return None


@pytest.mark.distributed
class TestPeriodicVerification(DistributedTest):
    def test_diverged_masks_are_caught_at_the_next_check(self):
        for result in self.run(sabotage_rank_one_seed):
            assert result is not None
            step, message = result
            assert step == 1  # verify_every=2: checked after the second optimizer step
            assert "masks diverged at optimizer step 1" in message
            assert "mask fingerprint" in message

    def test_agreeing_ranks_pass_every_check(self):
        results = self.run(train_cases, "ddp", [MASKED_CASES[0]], None, 1)
        assert len(results) == 2


def test_nested_wrapper_is_refused():
    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            from torch.distributed.fsdp import FullyShardedDataParallel

            self.inner = FullyShardedDataParallel.__new__(FullyShardedDataParallel)
            torch.nn.Module.__init__(self.inner)

    with pytest.raises(TypeError, match="outermost DDP / FSDP1 wrapper"):
        GradDrop().attach(Outer())
