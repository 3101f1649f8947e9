"""The best epoch's weights, kept so that test sets are evaluated once, on that model
(train.evaluate: selected).

Evaluating every language's test set after every epoch costs more than an epoch of
training on a short task with many languages; the selection only needs its own dev set.
So after each epoch only that dev set is scored, and the weights are copied whenever it
improves: each rank keeps its own part (a replica or its shard) on the CPU, and writes it
beside the checkpoints, so a resumed run still evaluates the right epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from graddrop_dist.fs import staged_file


class BestWeights:
    def __init__(self, folder: Path, rank: int) -> None:
        self.path = Path(folder) / f"rank{rank}.pt"
        self.epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None
        self.saved = True

    def keep(self, backend, epoch: int) -> None:
        self.epoch, self.weights, self.saved = epoch, backend.snapshot_weights(), False

    def save(self) -> None:
        """Write the copy if it changed since the last save (at each checkpoint)."""
        if self.saved or self.weights is None:
            return
        with staged_file(self.path, suffix=".pt") as partial:
            torch.save({"epoch": self.epoch, "weights": self.weights}, partial)
        self.saved = True

    def load(self) -> None:
        if self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            self.epoch, self.weights, self.saved = saved["epoch"], saved["weights"], True

    def restore(self, backend, epoch: int) -> None:
        """Put the kept weights of `epoch` back into the backend's model."""
        if self.weights is None or self.epoch != epoch:
            raise RuntimeError(f"train.evaluate=selected: the weights of epoch {epoch} were "
                               f"not kept (kept: {self.epoch}); rerun without --resume")
        backend.restore_weights(self.weights)
