"""The main job for a few optimizer steps on every backend and precision, one after another
in one process of a world-size-1 process group (NCCL on a GPU): the trainer end to end
(data, wrap, GradDrop, train, evaluate every language) on the device it decides. Part of
`make gpu-check`; the tests run it on the CPU."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

DS_CONFIGS = Path(__file__).resolve().parents[1] / "ds_configs"
BACKENDS = {
    "single": {"name": "single"},
    "ddp": {"name": "ddp"},
    "fsdp1": {"name": "fsdp1"},
    "fsdp2": {"name": "fsdp2"},
    **{stage: {"name": "deepspeed", "ds_config": str(DS_CONFIGS / f"{stage}.json")}
       for stage in ("zero1", "zero2", "zero3", "zero3_offload")},
}


def job_for(base: dict, backend: str, precision: str, steps: int, folder: Path) -> dict:
    data = copy.deepcopy(base)
    data["backend"] = dict(BACKENDS[backend])
    data.setdefault("train", {}).update(precision=precision, max_steps=steps,
                                        evaluate="end")
    data.setdefault("output", {}).update(dir=str(folder / f"{backend}-{precision}"),
                                         export_hf=False, export_final=False,
                                         report_to=(), checkpoint_every=0)
    return data


def run_one(data: dict, device: torch.device) -> dict:
    from graddrop_dist.trainer.job_config import JobConfig
    from graddrop_dist.trainer.job import run_job

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.monotonic()
    results = run_job(JobConfig.from_dict(data), rank=0, world_size=1, device=device)
    return {"ok": True, "seconds": round(time.monotonic() - start, 1),
            "device": results["device"], "steps": results["steps"],
            "overflow_steps": results["skipped_overflow_steps"],
            "nonfinite_steps": results["skipped_nonfinite_steps"],
            "train_language_test": results["final"]["test"][results["task"]["train_language"]],
            "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            if device.type == "cuda" else None}


def run_matrix(base: dict, device: torch.device, backends, precisions, steps: int,
               folder: Path) -> list[dict]:
    """One row per (backend, precision); a failure is recorded, not raised, so one broken
    backend does not hide the others."""
    rows = []
    for backend in backends:
        for precision in precisions:
            row = {"backend": backend, "precision": precision}
            try:
                row.update(run_one(job_for(base, backend, precision, steps, folder), device))
            except Exception as error:  # noqa: BLE001 - reported in the table
                message = str(error).strip().splitlines()
                row.update(ok=False, error=f"{type(error).__name__}: "
                                           f"{message[0] if message else ''}"[:300])
            rows.append(row)
            print(row, flush=True)
    return rows
