"""Where a rank computes, decided in one place: `train.device: auto` is
`cuda:<local rank>` when torch sees a CUDA device and the CPU otherwise; `cpu` and `cuda`
force one. Under CUDA the ranks talk over NCCL, on the CPU over gloo. A node whose launcher
shows each rank only its own GPU (Slurm's `--gpus-per-task=1`, a `CUDA_VISIBLE_DEVICES`
per rank) has one visible device: every local rank uses `cuda:0` there. Everything else
(more local ranks than GPUs) is a one-line error before any process group starts.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto", *, local_rank: int = 0,
                   cuda_available: bool | None = None,
                   cuda_count: int | None = None) -> torch.device:
    """The device of the rank with this local rank (`cuda_*` default to what torch sees)."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"train.device: expected one of {', '.join(DEVICE_CHOICES)}, "
                         f"got {choice!r}")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if choice == "cpu" or (choice == "auto" and not available):
        return torch.device("cpu")
    if not available:
        raise ValueError(f"train.device: cuda was asked for, but torch {torch.__version__} "
                         f"(CUDA {torch.version.cuda or 'none'}) sees no CUDA device; "
                         "allowed here: auto, cpu")
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    if local_rank < count:
        return torch.device("cuda", local_rank)
    if count == 1:  # the launcher gave this rank its own GPU, and only that one
        return torch.device("cuda", 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    raise ValueError(f"train.device: local rank {local_rank} has no GPU: this node shows "
                     f"{count} CUDA devices (CUDA_VISIBLE_DEVICES={visible}); start at most "
                     f"{count} ranks per node, or one rank per visible GPU")


def collective_backend(device: torch.device) -> str:
    """The torch.distributed backend for ranks on `device`."""
    return "nccl" if device.type == "cuda" else "gloo"


def deepspeed_accelerator(device: torch.device, env: Mapping[str, str] | None = None) -> str:
    """The DS_ACCELERATOR that matches `device`; a conflicting one is a one-line error.

    DeepSpeed picks its accelerator once, on first use, from DS_ACCELERATOR or from what
    it detects; a CPU run on a GPU node must tell it, a GPU run must not be told `cpu`."""
    env = os.environ if env is None else env
    wanted = "cuda" if device.type == "cuda" else "cpu"
    found = env.get("DS_ACCELERATOR")
    if found and found != wanted:
        raise ValueError(f"train.device: this rank computes on {device}, but DS_ACCELERATOR="
                         f"{found} tells DeepSpeed otherwise; unset DS_ACCELERATOR or set it "
                         f"to {wanted}")
    return wanted


def bind(device: torch.device) -> None:
    """Make `device` this process's current device, for NCCL and for DeepSpeed."""
    os.environ["DS_ACCELERATOR"] = deepspeed_accelerator(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
