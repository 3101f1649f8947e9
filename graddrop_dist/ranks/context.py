"""Who this rank is and where it computes: all that the pieces of a job need to know of
the world, passed as one value instead of rank and world size through every signature."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class RankContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes what the job leaves for people to read."""
        return self.rank == 0
