"""Checkpoints that are either complete or invisible.

Layout under `<output>/checkpoints/`: `step-00000040/` (complete), `latest` (the name of
the newest complete one, replaced atomically). A checkpoint is written into
`.tmp-step-N/` by every rank (in the backend's format: DeepSpeed's own, or
torch.distributed.checkpoint for the others), then rank 0 writes the trainer state,
renames the folder and only then moves `latest`. A run killed at any moment leaves
`latest` on the previous complete checkpoint; `.tmp-*` folders are never read and are
swept at the next save.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from graddrop_dist.fs import replace_directory, write_atomically
from graddrop_dist.parallel.device import rng_state as device_rng_state
from graddrop_dist.parallel.device import set_rng_state as set_device_rng_state

STATE_FILE = "trainer_state.json"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rng_state(device: torch.device) -> dict:
    return {**device_rng_state(device), "python": random.getstate(),
            "numpy": np.random.get_state()}


def set_rng_state(state: dict, device: torch.device) -> None:
    set_device_rng_state(state, device)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


class Checkpointer:
    def __init__(self, root: Path, context, *, keep: int) -> None:
        """context: this rank (graddrop_dist.dist.context.RankContext)."""
        self.root = Path(root)
        self.rank, self.world_size, self.keep = context.rank, context.world_size, keep

    # -------------------------------------------------------------- save
    def save(self, backend, step: int, trainer_state: dict) -> Path:
        """`backend` (graddrop_dist.parallel) writes model, optimizer and schedule in its
        own format; this adds the trainer state and the RNG states and publishes it."""
        try:
            return self._save(backend, step, trainer_state)
        except OSError as error:
            # Nothing was renamed: `latest` still names the previous complete checkpoint.
            previous = self.latest()
            raise ValueError(f"checkpoint at step {step} could not be written under "
                             f"{self.root} ({error.strerror or error}); the latest complete "
                             f"checkpoint is still {previous.name if previous else 'none'}") \
                from None

    def _save(self, backend, step: int, trainer_state: dict) -> Path:
        name = f"step-{step:08d}"
        partial = self.root / f".tmp-{name}"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            partial.mkdir()
        _barrier()
        backend.save_checkpoint(partial)
        torch.save(rng_state(backend.device), partial / f"rng-rank{self.rank}.pt")
        _barrier()
        final = self.root / name
        if self.rank == 0:
            write_atomically(partial / STATE_FILE, json.dumps(
                {**trainer_state, "world_size": self.world_size}, indent=1))
            replace_directory(partial, final)
            write_atomically(self.root / "latest", name)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        complete = sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).exists())
        for old in complete[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    # -------------------------------------------------------------- load
    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if pointer.exists():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).exists():
                return candidate
        complete = sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).exists())
        return complete[-1] if complete else None

    def load(self, backend, path: Path, global_batch: int) -> dict:
        """Restore a checkpoint. On another world size (where the backend's format
        reshards: torch.distributed.checkpoint does, DeepSpeed's does not) the global batch
        must stay the same, so the run sees the same batches in the same order; per-rank
        RNG states are then taken from the old rank of the same number (or rank 0), so
        dropout differs."""
        state = json.loads((path / STATE_FILE).read_text())
        saved_world = state["world_size"]
        if saved_world != self.world_size:
            if not backend.can_reshard:
                raise ValueError(f"--resume: {path} was written by {saved_world} ranks in "
                                 f"{backend.name}'s own format, this run has "
                                 f"{self.world_size}; {backend.name} checkpoints resume on "
                                 "the same world size")
            if state.get("global_batch") != global_batch:
                raise ValueError(f"--resume: {path} was written by {saved_world} ranks with "
                                 f"a global batch of {state.get('global_batch')}; this run "
                                 f"has {self.world_size} ranks and a global batch of "
                                 f"{global_batch}; keep micro_batch_size x "
                                 "gradient_accumulation x ranks equal")
        backend.load_checkpoint(path)
        rng_rank = self.rank if self.rank < saved_world else 0
        set_rng_state(torch.load(path / f"rng-rank{rng_rank}.pt", weights_only=False),
                      backend.device)
        return state
