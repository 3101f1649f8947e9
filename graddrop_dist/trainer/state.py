"""Where a run is, as one value: what a checkpoint saves and restores, and what the
results report. Nothing else about the run changes as it trains."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobState:
    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one record per evaluation
    best: dict | None = None  # the record with the best training-language dev score
    skipped_nonfinite_steps: int = 0
    skipped_overflow_steps: int = 0
    graddrop: dict | None = None  # GradDrop.state_dict()
    global_batch: int | None = None  # features per optimizer step, over all ranks
    metrics_records: int = 0  # lines of metrics.jsonl when this state was saved
    data_digest: str | None = None  # of the encoded training features (rank_checks)

    def count_step(self, outcome: str) -> None:
        """One optimizer step done: `outcome` is the backend's `last_step` (applied, or
        skipped for a non-finite gradient or an fp16 overflow)."""
        self.global_step += 1
        if outcome == "skipped-nonfinite":
            self.skipped_nonfinite_steps += 1
        elif outcome == "skipped-overflow":
            self.skipped_overflow_steps += 1
        elif outcome != "applied":
            raise ValueError(f"unknown step outcome {outcome!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        """From a checkpoint's trainer state (fields it lacks keep their defaults; what the
        checkpoint adds, such as its world size, is not part of the state)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def record_evaluation(self, epoch: int, scores: dict, selected_by: str,
                          extra: dict | None = None) -> bool:
        """Append an evaluation ({"dev": {language: score, "avg": ...}, "test": ...}, and
        the head's other metrics in `extra`); True when it is the new best by the dev score
        `selected_by` (a language, or "avg")."""
        record = {"epoch": epoch, "global_step": self.global_step, **scores}
        if extra:
            record["extra"] = extra
        self.history.append(record)
        best = self.best
        if best is None or scores["dev"].get(selected_by, 0) > best["dev"].get(selected_by, 0):
            self.best = record
            return True
        return False

    def unevaluated_epoch(self) -> int | None:
        """The epoch label of a final evaluation the run still needs (train.evaluate=end,
        or a run cut by max_steps: the last epoch trained), or None."""
        if self.history and self.history[-1]["global_step"] == self.global_step:
            return None
        whole_epochs_done = self.step_in_epoch == 0 and self.epoch > 0
        return self.epoch - 1 if whole_epochs_done else self.epoch
