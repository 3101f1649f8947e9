"""How tensors reach the device a rank computes on (graddrop_dist/ranks/device.py decides
which), and the random state that lives there."""

from __future__ import annotations

import torch


def move_batch(batch: dict, device: torch.device) -> dict:
    """A batch of CPU tensors on `device`: through pinned memory, copied without blocking
    the host (the copy overlaps the previous step's work on the GPU)."""
    if device.type == "cpu":
        return batch
    return {key: value.pin_memory().to(device, non_blocking=True)
            if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def rng_state(device: torch.device) -> dict:
    """The RNG states that dropout on `device` draws from (CPU always, CUDA when used)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
