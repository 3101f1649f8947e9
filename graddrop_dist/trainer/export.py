"""A consolidated Hugging Face checkpoint from any backend (ZeRO-3 and FSDP shards too)."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from graddrop_dist.fs import staged_directory


def export_pretrained(backend, tokenizer, directory: Path, context) -> None:
    """Gather full parameters (a collective: call on every rank), then rank 0 writes
    `save_pretrained` output into `directory`, replacing it atomically."""
    parameters = backend.full_parameters()
    if context.is_main:
        with staged_directory(directory) as staging:
            backend.module.save_pretrained(staging, state_dict=parameters)
            tokenizer.save_pretrained(staging)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
