"""DeepSpeed's JSON is honoured: its optimizer and scheduler sections build what the engine
steps, the offload config trains with the CPU Adam it needs, and what cannot work is one
line before anything starts."""

from __future__ import annotations

import json

import pytest
import torch

from backend_runs import setup
from graddrop_dist.backends import TrainSettings, wrap
from graddrop_dist.backends.deepspeed import DeepSpeedBackend
from graddrop_dist.testing.local_ranks import DistributedTest
from scenario import ACCUM, DS_CONFIGS, LR, compare_parameters, micro_batches, new_model

# The scenario's optimizer (AdamW, lr 1e-3, eps 1e-3, no decay) written as a JSON section,
# and DeepSpeed's warmup schedule.
OPTIMIZER = {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto", "eps": 1e-3,
                                         "torch_adam": True}}
SCHEDULER = {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": "auto",
                                            "warmup_num_steps": "auto",
                                            "warmup_type": "linear"}}


def train_with_sections(rank, world_size, sections: dict, schedule=(4, 3)) -> dict:
    """zero2.json plus `sections`; schedule: the trainer's (warmup, total) steps."""
    config = {**json.loads((DS_CONFIGS / "zero2.json").read_text()), **sections}
    micro = micro_batches(0, world_size)[0][0]["input_ids"].shape[0]
    backend = wrap(new_model(), "deepspeed", ds_config=config,
                   settings=TrainSettings(micro_batch_size=micro, accumulation=ACCUM, lr=LR,
                                          warmup_steps=schedule[0], total_steps=schedule[1]))
    lrs, kinds = [], {type(backend.model.optimizer.optimizer).__name__}
    for micro_steps in micro_batches(rank, world_size):
        backend.train_step(micro_steps)
        lrs.append(backend.current_lr())
    parameters = {n: p.float() for n, p in backend.full_parameters().items()}
    eps = backend.model.optimizer.optimizer.param_groups[0]["eps"]
    backend.close()
    return dict(parameters=parameters, lrs=lrs, optimizers=kinds, eps=eps)


def train_from_scenario(rank, world_size) -> dict:
    backend = setup("zero2", world_size)  # the client optimizer, no schedule
    for micro_steps in micro_batches(rank, world_size):
        backend.train_step(micro_steps)
    parameters = {n: p.float() for n, p in backend.full_parameters().items()}
    backend.close()
    return dict(parameters=parameters)


@pytest.mark.distributed
class TestTheJsonIsHonoured(DistributedTest):
    timeout = 240

    def test_an_optimizer_section_builds_the_optimizer(self):
        from_json = self.run(train_with_sections, {"optimizer": OPTIMIZER}, (0, 0))[0]
        assert from_json["optimizers"] == {"AdamW"}
        assert from_json["eps"] == 1e-3
        client = self.run(train_from_scenario)[0]
        compare_parameters(from_json["parameters"], client["parameters"])

    def test_a_scheduler_section_drives_the_learning_rate(self):
        result = self.run(train_with_sections, {"scheduler": SCHEDULER})[0]
        # DeepSpeed's WarmupLR over the trainer's 4 warmup steps counts from 0: after
        # steps 1, 2 and 3 it is where the trainer's own schedule was a step earlier.
        assert result["lrs"] == pytest.approx([0.0, LR / 4, LR / 2])

    def test_the_trainer_schedule_without_a_section(self):
        result = self.run(train_with_sections, {})[0]
        # Linear warmup over 4 steps, then decay to 0 at step 3: warmup never finishes.
        assert result["lrs"] == pytest.approx([LR / 4, LR / 2, 3 * LR / 4])


def offload_run(rank, world_size) -> dict:
    micro = micro_batches(0, world_size)[0][0]["input_ids"].shape[0]
    backend = wrap(new_model(), "deepspeed", ds_config=DS_CONFIGS / "zero3_offload.json",
                   settings=TrainSettings(micro_batch_size=micro, accumulation=ACCUM, lr=LR))
    losses = [backend.train_step(micro) for micro in micro_batches(rank, world_size)]
    optimizer = type(backend.model.optimizer.optimizer).__name__
    parameters = backend.full_parameters()
    backend.close()
    return dict(losses=losses, optimizer=optimizer,
                finite=all(bool(torch.isfinite(p).all()) for p in parameters.values()))


@pytest.mark.distributed
@pytest.mark.slow  # 80-90 s: builds and runs DeepSpeed's CPU Adam
class TestOffload(DistributedTest):
    timeout = 280  # the first run builds DeepSpeed's CPU Adam (cached afterwards)

    def test_zero3_offload_trains_with_cpu_adam(self):
        for result in self.run(offload_run):
            assert result["optimizer"] == "DeepSpeedCPUAdam" and result["finite"]
            assert all(loss == loss for loss in result["losses"])


def test_an_optimizer_in_the_json_and_one_passed_is_one_line():
    with pytest.raises(ValueError, match="ds_config: optimizer is set in the JSON and an "
                                         "optimizer was passed too; keep one"):
        run_in_one_rank(lambda: wrap(new_model(), "deepspeed",
                                     ds_config={"optimizer": OPTIMIZER},
                                     make_optimizer=torch.optim.SGD))


def run_in_one_rank(fn):
    """`fn` under a 1-rank gloo group (DeepSpeed needs one)."""
    from graddrop_dist.testing.local_ranks import RankFailure, run_ranks

    try:
        run_ranks(lambda rank, world_size: fn(), 1)
    except RankFailure as failure:
        raise failure.exception from None


def test_fp16_under_deepspeed_on_a_cpu_without_fp16_is_one_line(monkeypatch):
    from graddrop_dist.adapters import _internals

    monkeypatch.setattr(_internals, "deepspeed_cpu_has_fp16", lambda: False)
    with pytest.raises(ValueError) as error:
        DeepSpeedBackend.preflight(settings=TrainSettings(precision="fp16"),
                                   device=torch.device("cpu"), world_size=2,
                                   ds_config=DS_CONFIGS / "zero3.json")
    assert str(error.value) == ("train.precision: fp16 under DeepSpeed needs a GPU "
                                "(DeepSpeed's CPU accelerator has no fp16 on this CPU); "
                                "allowed on this CPU: fp32, bf16")


def test_a_torch_optimizer_under_offload_is_one_line():
    with pytest.raises(ValueError, match="zero3_offload.json: zero_optimization."
                                         "offload_optimizer needs DeepSpeed's CPU Adam"):
        run_in_one_rank(lambda: wrap(new_model(), "deepspeed",
                                     ds_config=DS_CONFIGS / "zero3_offload.json",
                                     make_optimizer=torch.optim.AdamW))
