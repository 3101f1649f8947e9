"""A consolidated Hugging Face checkpoint from any backend (ZeRO-3 and FSDP shards too)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch.distributed as dist


def export_pretrained(backend, tokenizer, directory: Path, *, rank: int) -> None:
    """Gather full parameters (a collective: call on every rank), then rank 0 writes
    `save_pretrained` output into `directory`, replacing it atomically."""
    parameters = backend.full_parameters()
    if rank == 0:
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            backend.module.save_pretrained(staging, state_dict=parameters)
            tokenizer.save_pretrained(staging)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
