"""Checkpoints that are either complete or invisible.

Layout under `<output>/checkpoints/`: `step-00000040/` (complete), `latest` (the name of
the newest complete one, replaced atomically). A checkpoint is written into
`.tmp-step-N/` by every rank (DeepSpeed's own format, or torch.distributed.checkpoint for
the other backends), then rank 0 writes the trainer state, renames the folder and only
then moves `latest`. A run killed at any moment leaves `latest` on the previous complete
checkpoint; `.tmp-*` folders are never read and are swept at the next save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

STATE_FILE = "trainer_state.json"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


class Checkpointer:
    def __init__(self, root: Path, *, rank: int, world_size: int, keep: int) -> None:
        self.root = Path(root)
        self.rank, self.world_size, self.keep = rank, world_size, keep

    # -------------------------------------------------------------- save
    def save(self, setup, step: int, trainer_state: dict) -> Path:
        try:
            return self._save(setup, step, trainer_state)
        except OSError as error:
            # Nothing was renamed: `latest` still names the previous complete checkpoint.
            previous = self.latest()
            raise ValueError(f"checkpoint at step {step} could not be written under "
                             f"{self.root} ({error.strerror or error}); the latest complete "
                             f"checkpoint is still {previous.name if previous else 'none'}") \
                from None

    def _save(self, setup, step: int, trainer_state: dict) -> Path:
        name = f"step-{step:08d}"
        partial = self.root / f".tmp-{name}"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            partial.mkdir()
        _barrier()
        if setup.is_deepspeed:
            setup.model.save_checkpoint(str(partial), tag="deepspeed")
        else:
            import torch.distributed.checkpoint as dcp

            dcp.save(self._model_and_optimizer(setup), checkpoint_id=str(partial / "dcp"))
        torch.save(rng_state(), partial / f"rng-rank{self.rank}.pt")
        _barrier()
        final = self.root / name
        if self.rank == 0:
            if setup.scheduler is not None and not setup.is_deepspeed:
                torch.save(setup.scheduler.state_dict(), partial / "scheduler.pt")
            _write_atomically(partial / STATE_FILE, json.dumps(
                {**trainer_state, "world_size": self.world_size}, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            _write_atomically(self.root / "latest", name)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        complete = sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).exists())
        for old in complete[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _model_and_optimizer(setup) -> dict:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(setup.model, setup.optimizer)
        return {"model": model_state, "optimizer": optimizer_state}

    # -------------------------------------------------------------- load
    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if pointer.exists():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).exists():
                return candidate
        complete = sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).exists())
        return complete[-1] if complete else None

    def load(self, setup, path: Path, global_batch: int) -> dict:
        """Restore a checkpoint. On another world size (torch.distributed.checkpoint
        reshards; DeepSpeed's own format cannot) the global batch must stay the same, so
        the run sees the same batches in the same order; per-rank RNG states are then
        taken from the old rank of the same number (or rank 0), so dropout differs."""
        state = json.loads((path / STATE_FILE).read_text())
        saved_world = state["world_size"]
        if saved_world != self.world_size:
            if setup.is_deepspeed:
                raise ValueError(f"--resume: {path} was written by {saved_world} ranks in "
                                 f"DeepSpeed's format, this run has {self.world_size}; "
                                 "DeepSpeed checkpoints resume on the same world size")
            if state.get("global_batch") != global_batch:
                raise ValueError(f"--resume: {path} was written by {saved_world} ranks with "
                                 f"a global batch of {state.get('global_batch')}; this run "
                                 f"has {self.world_size} ranks and a global batch of "
                                 f"{global_batch}; keep micro_batch_size x "
                                 "gradient_accumulation x ranks equal")
        if setup.is_deepspeed:
            load_path, _ = setup.model.load_checkpoint(str(path), tag="deepspeed")
            if load_path is None:
                raise ValueError(f"--resume: DeepSpeed found no checkpoint in {path}")
        else:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import set_state_dict

            target = self._model_and_optimizer(setup)
            dcp.load(target, checkpoint_id=str(path / "dcp"))
            set_state_dict(setup.model, setup.optimizer, model_state_dict=target["model"],
                           optim_state_dict=target["optimizer"])
            if setup.scheduler is not None:
                setup.scheduler.load_state_dict(torch.load(path / "scheduler.pt"))
        rng_rank = self.rank if self.rank < saved_world else 0
        set_rng_state(torch.load(path / f"rng-rank{rng_rank}.pt", weights_only=False))
        return state
