"""The trainer fields every backend honours, as one value (importing no torch, so that a
config can build it before anything heavy loads)."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "bf16", "fp16")


def global_batch(micro_batch_size: int, accumulation: int, world_size: int) -> int:
    """Examples per optimizer step over all ranks: the one formula (the trainer's config,
    its data order, its DeepSpeed JSON and its printouts all ask it)."""
    return micro_batch_size * accumulation * world_size

NONFINITE_POLICIES = ("skip", "stop")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """The trainer fields every backend honours, or refuses in one line."""

    micro_batch_size: int = 1
    accumulation: int = 1
    precision: str = "fp32"
    max_grad_norm: float = 0.0  # clipping after masking; 0: none
    nonfinite: str = "skip"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    total_steps: int = 0  # linear warmup, then decay to 0 at this step; 0: constant lr

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision: expected one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"train.nonfinite: expected one of "
                             f"{', '.join(NONFINITE_POLICIES)}, got {self.nonfinite!r}")

    def global_batch(self, world_size: int) -> int:
        return global_batch(self.micro_batch_size, self.accumulation, world_size)

    @property
    def autocast_dtype(self):
        """The torch dtype forward passes autocast to (None: fp32, no autocast)."""
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
