"""The device decision under each launcher's variables, with the GPUs a node would show."""

from __future__ import annotations

import pytest
import torch

from graddrop_dist.ranks.device import (bind, collective_backend, deepspeed_accelerator,
                                       resolve_device)
from graddrop_dist.ranks.discovery import discover_rank
from graddrop_dist.backends.placement import move_batch

# What each launcher exports for the third process on its node (local rank 2).
LAUNCHERS = {
    "torchrun": {"RANK": "10", "WORLD_SIZE": "16", "LOCAL_RANK": "2"},
    "deepspeed": {"RANK": "2", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "CROSS_RANK": "0"},
    "mpirun": {"OMPI_COMM_WORLD_RANK": "10", "OMPI_COMM_WORLD_SIZE": "16",
               "OMPI_COMM_WORLD_LOCAL_RANK": "2"},
    "srun": {"SLURM_PROCID": "10", "SLURM_NTASKS": "16", "SLURM_LOCALID": "2",
             "SLURM_JOB_NODELIST": "gpu[01-02]"},
}


def device_under(env: dict, choice: str = "auto", *, gpus: int = 8) -> torch.device:
    """What graddrop-train decides for the rank `env` describes, on a node with `gpus`."""
    info = discover_rank(env, use_mpi4py=False)
    return resolve_device(choice, local_rank=info.local_rank, cuda_available=gpus > 0,
                          cuda_count=gpus)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_each_launcher_puts_local_rank_two_on_gpu_two(launcher):
    assert device_under(LAUNCHERS[launcher]) == torch.device("cuda", 2)
    assert device_under(LAUNCHERS[launcher], "cuda") == torch.device("cuda", 2)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_cpu_is_chosen_without_gpus_or_when_asked(launcher):
    assert device_under(LAUNCHERS[launcher], gpus=0) == torch.device("cpu")
    assert device_under(LAUNCHERS[launcher], "cpu", gpus=8) == torch.device("cpu")


def test_a_rank_shown_only_its_own_gpu_uses_it():
    # srun --gpus-per-task=1: every task sees one device, whatever its local rank.
    assert device_under(LAUNCHERS["srun"], gpus=1) == torch.device("cuda", 0)


def test_more_local_ranks_than_gpus_is_one_line():
    with pytest.raises(ValueError) as error:
        device_under(LAUNCHERS["torchrun"], gpus=2)
    assert str(error.value).startswith("train.device: local rank 2 has no GPU: this node "
                                       "shows 2 CUDA devices")
    assert "\n" not in str(error.value)


def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(ValueError, match="train.device: cuda was asked for, but torch .* sees "
                                         "no CUDA device; allowed here: auto, cpu"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="train.device: expected one of auto, cpu, cuda"):
        resolve_device("gpu")


def test_the_collective_backend_follows_the_device():
    assert collective_backend(torch.device("cuda", 3)) == "nccl"
    assert collective_backend(torch.device("cpu")) == "gloo"


def test_deepspeed_is_told_the_same_device(monkeypatch):
    assert deepspeed_accelerator(torch.device("cpu"), {}) == "cpu"
    assert deepspeed_accelerator(torch.device("cuda", 1), {"DS_ACCELERATOR": "cuda"}) == "cuda"
    with pytest.raises(ValueError, match="DS_ACCELERATOR=cpu tells DeepSpeed otherwise"):
        deepspeed_accelerator(torch.device("cuda", 0), {"DS_ACCELERATOR": "cpu"})
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    bind(torch.device("cpu"))
    import os

    assert os.environ["DS_ACCELERATOR"] == "cpu"


def test_a_cpu_batch_stays_as_it_is_on_the_cpu():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "note": "kept"}
    moved = move_batch(batch, torch.device("cpu"))
    assert moved["input_ids"] is batch["input_ids"] and moved["note"] == "kept"
