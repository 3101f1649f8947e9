"""What ranks check about each other: the same job before the first step, and, after the
run, a record per rank that anyone can compare."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

import torch

from graddrop_dist.trainer.job_config import JobConfig


def data_digest(train_data) -> str:
    """16 hex digits for the encoded training features, in order: what ranks compare, and
    what a resume compares with the checkpoint's."""
    digest = hashlib.sha256()
    for feature in train_data.features:
        digest.update(repr(sorted(feature.items())).encode())
    return digest.hexdigest()[:16]


def agree_on_job(config: JobConfig, train_data, eval_data, digest: str) -> None:
    """Every rank must run the same job on the same data (`digest`: data_digest of
    train_data) with the same code."""
    import graddrop_dist
    from graddrop_dist.ranks.agreement import raise_on_disagreement
    from graddrop_dist.mask import mask_code_version

    payload = {f"{section}.{key}": value for section, values in config.to_dict().items()
               for key, value in values.items()}
    payload.update({
        "training examples": len(train_data),
        "training data digest": digest,
        "evaluation examples": {split: sum(len(d) for d in data.values())
                                for split, data in eval_data.items()},
        "code versions": f"graddrop-dist {graddrop_dist.__version__} (mask "
                         f"{mask_code_version()}), torch {torch.__version__}, transformers "
                         f"{version('transformers')}, deepspeed {version('deepspeed')}"})
    raise_on_disagreement(payload, "ranks disagree about the job")


def write_rank_record(output: Path, context, graddrop) -> None:
    """ranks/rank<r>.json: how this rank was found, where it computed, and the
    fingerprint of its last masks, so anyone can check after the fact that every rank
    drew the same masks."""
    record = {"rank": context.rank, "world_size": context.world_size,
              "discovered_by": os.environ.get("GRADDROP_RANK_SOURCE", "unknown"),
              "host": os.uname().nodename, "device": str(context.device),
              "optimizer_steps": graddrop.step, "seed": graddrop.config.seed,
              "last_mask_fingerprint": graddrop.fingerprint(max(graddrop.step - 1, 0))}
    folder = output / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{context.rank}.json").write_text(json.dumps(record, indent=1))
