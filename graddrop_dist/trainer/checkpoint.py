"""Checkpoints that are either complete or invisible.

Layout under `<output>/checkpoints/`: `step-00000040/` (complete), `latest` (the name of
the newest complete one, replaced atomically). A checkpoint is written into
`.tmp-step-N/` by every rank (in the backend's format: DeepSpeed's own, or
torch.distributed.checkpoint for the others), then rank 0 writes the trainer state and
the manifest (trainer/manifest.py: each file's size and checksum), renames the folder and
only then moves `latest`. A run killed at any moment leaves `latest` on the previous
complete checkpoint; `.tmp-*` folders are never read and are swept at the next save. A
resume checks the manifest first and, when a file is missing, truncated or changed, says
which and falls back to the newest checkpoint that is intact.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from graddrop_dist.ranks.process_group import is_collective_failure
from graddrop_dist.fs import replace_directory, write_atomically
from graddrop_dist.trainer.manifest import manifest_problem, write_manifest
from graddrop_dist.backends.placement import rng_state as device_rng_state
from graddrop_dist.backends.placement import set_rng_state as set_device_rng_state

STATE_FILE = "trainer_state.json"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def write_failure(error: BaseException) -> str:
    """One line for why a write failed: the OS's reason and file, torch's message, or the
    first rank's error inside torch.distributed.checkpoint's CheckpointException."""
    failures = getattr(error, "failures", None)
    if failures:  # {rank: (exception, traceback)}
        rank, (inner, _) = next(iter(sorted(failures.items(), key=lambda item: item[0])))
        return f"rank {rank}: {write_failure(inner)}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror + (f": {error.filename}" if error.filename else "")
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_same_data(folder: Path, digest: str) -> None:
    """A resume on other training data (another file, tokenizer or max_length) would see
    other batches: refused in one line. Checkpoints older than the digest pass."""
    saved = json.loads((folder / STATE_FILE).read_text()).get("data_digest")
    if saved is not None and saved != digest:
        raise ValueError(f"--resume: the training data differs from {folder.name}'s "
                         f"(digest {saved} -> {digest}); resume on the same data, or start "
                         "a new run in another output.dir")


def _step(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


def rng_state(device: torch.device) -> dict:
    return {**device_rng_state(device), "python": random.getstate(),
            "numpy": np.random.get_state()}


def set_rng_state(state: dict, device: torch.device) -> None:
    set_device_rng_state(state, device)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


class Checkpointer:
    def __init__(self, root: Path, context, *, keep: int, checksums: bool = True) -> None:
        """context: this rank (graddrop_dist.ranks.context.RankContext); checksums: also
        hash every file into the manifest and check the hashes on resume."""
        self.root = Path(root)
        self.rank, self.world_size, self.keep = context.rank, context.world_size, keep
        self.checksums = checksums

    # -------------------------------------------------------------- save
    def save(self, backend, step: int, trainer_state: dict) -> Path:
        """`backend` (graddrop_dist.backends) writes model, optimizer and schedule in its
        own format; this adds the trainer state and the RNG states and publishes it."""
        from torch.distributed.checkpoint.api import CheckpointException

        try:
            return self._save(backend, step, trainer_state)
        except (OSError, RuntimeError, CheckpointException) as error:
            if isinstance(error, RuntimeError) and is_collective_failure(error):
                raise  # a peer died while saving: not this checkpoint's problem
            # Nothing was renamed: `latest` still names the previous complete checkpoint.
            if self.rank == 0:
                shutil.rmtree(self.root / f".tmp-step-{step:08d}", ignore_errors=True)
            previous = self.latest()
            raise ValueError(f"checkpoint at step {step} could not be written under "
                             f"{self.root} ({write_failure(error)}); the partial folder was "
                             f"removed, the latest complete checkpoint is still "
                             f"{previous.name if previous else 'none'}") from None

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
            write_manifest(partial, checksums=self.checksums)  # last: it vouches for all
            replace_directory(partial, final)
            write_atomically(self.root / "latest", name)
            self._prune()
        _barrier()
        return final

    def _complete(self) -> list[Path]:
        """Folders with a trainer state, oldest first by step (never by name)."""
        return sorted((p for p in self.root.glob("step-*")
                       if p.name[5:].isdigit() and (p / STATE_FILE).exists()), key=_step)

    def _prune(self) -> None:
        for old in self._complete()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    # -------------------------------------------------------------- load
    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if pointer.exists():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).exists():
                return candidate
        complete = self._complete()
        return complete[-1] if complete else None

    def latest_intact(self) -> Path | None:
        """The newest checkpoint whose manifest holds, the same on every rank (rank 0 checks
        and tells the others); each one skipped is a warning line naming its bad file.
        None when there is no checkpoint; ValueError when none is intact."""
        choice = self._check_newest_first() if self.rank == 0 else None
        if _distributed():
            box = [choice]
            dist.broadcast_object_list(box, src=0)
            choice = box[0]
        if isinstance(choice, list):
            raise ValueError(f"--resume: no intact checkpoint in {self.root}: "
                             + "; ".join(choice))
        return None if choice is None else self.root / choice

    def _check_newest_first(self):
        """A name, None (no checkpoint) or the list of every checkpoint's problem."""
        latest = self.latest()
        candidates = [latest] if latest else []
        candidates += [p for p in reversed(self._complete()) if p != latest]
        problems = []
        for folder in candidates:
            problem = manifest_problem(folder, checksums=self.checksums)
            if problem is None:
                if problems:
                    print(f"graddrop-train: warning: {'; '.join(problems)}; resuming from "
                          f"{folder.name}", file=sys.stderr, flush=True)
                return folder.name
            problems.append(f"checkpoint {folder.name} is damaged: {problem}")
        return problems or None

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
