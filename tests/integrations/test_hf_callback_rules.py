"""GradDropCallback's rules, driven with the Trainer's own event objects (no Trainer run):
a step the optimizer skipped does not move the mask; a resume from a checkpoint without
GradDrop's state is refused; under DDP, compaction (a communication hook the callback
cannot reach) is refused, and ranks agree on a drawn seed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from graddrop_dist import GradDropConfig
from graddrop_dist.testing.local_ranks import run_ranks
from graddrop_dist.integrations.hf import GradDropCallback
from tiny_models import tiny_xlmr

ARGS = SimpleNamespace(gradient_accumulation_steps=2)


def begin(callback, state=None):
    state = state or TrainerState(num_train_epochs=1)
    callback.on_train_begin(ARGS, state, TrainerControl(), model=tiny_xlmr(),
                            train_dataloader=[None] * 8)
    return state


def test_a_skipped_optimizer_step_does_not_move_the_mask():
    callback = GradDropCallback(GradDropConfig(seed=3))
    state = begin(callback)
    callback.on_optimizer_step(ARGS, state, TrainerControl(),
                               optimizer=SimpleNamespace(step_was_skipped=True))
    assert callback.graddrop.step == 0
    callback.on_optimizer_step(ARGS, state, TrainerControl(),
                               optimizer=SimpleNamespace(step_was_skipped=False))
    assert callback.graddrop.step == 1 and callback.graddrop.steps_per_epoch == 4
    assert callback.state()["attributes"]["graddrop_state"]["step"] == 1


def test_resuming_a_checkpoint_without_graddrop_state_is_refused():
    state = TrainerState(num_train_epochs=1, global_step=6)
    with pytest.raises(ValueError, match="resumed at step 6 from a checkpoint without "
                                         "GradDrop's state"):
        begin(GradDropCallback(GradDropConfig(seed=3)), state)


def _under_ddp(rank, world_size, compact):
    callback = GradDropCallback(GradDropConfig(seed=None, compact=compact))
    try:
        begin(callback)
    except ValueError as error:
        return str(error)
    return callback.backend, callback.graddrop.config.seed


def test_under_ddp_ranks_agree_on_a_drawn_seed_and_compaction_is_refused():
    (backend, seed), (backend_1, seed_1) = run_ranks(_under_ddp, 2, False, timeout=120)
    assert backend == backend_1 == "ddp" and seed == seed_1
    refused = run_ranks(_under_ddp, 2, True, timeout=120)
    assert all(message.startswith("graddrop.compact: the module inside DDP was given (the "
                                  "Hugging Face Trainer hands callbacks no DDP wrapper)")
               for message in refused)
