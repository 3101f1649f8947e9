"""Starting and ending a process group, and telling a failed collective from other errors.

NCCL for ranks on GPUs (bound to the rank's GPU from the start), gloo on CPUs. Ending one
cleanly matters: a gloo worker freed during interpreter shutdown aborts about a third of
otherwise successful runs ("terminate called without an active exception"), so the group
is destroyed explicitly after a garbage collection.
"""

from __future__ import annotations

import gc
from datetime import timedelta

import torch
import torch.distributed as dist

from graddrop_dist.ranks.device import collective_backend

_FAILURE_MARKERS = ("gloo", "nccl", "connection closed", "timed out", "connection reset",
                    "broken pipe")


def start(device: torch.device, timeout_s: float, **init_kwargs) -> None:
    """torch.distributed from the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) unless
    init_kwargs say otherwise (a file store, explicit rank and world size)."""
    dist.init_process_group(collective_backend(device), timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None,
                            **init_kwargs)


def end(*, barrier: bool = False) -> None:
    """Collect garbage, optionally wait for every rank, and destroy the group."""
    gc.collect()
    if not dist.is_initialized():
        return
    if barrier:
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - another rank died; leave anyway
            pass
    dist.destroy_process_group()


def is_collective_failure(error: BaseException) -> bool:
    """A collective broke (a peer died, a timeout), rather than this rank's own code."""
    text = str(error).lower()
    return isinstance(error, (dist.DistError, ConnectionError)) or any(
        marker in text for marker in _FAILURE_MARKERS)
