"""Which bits, as one value: `MaskSpec` names the draw of one parameter at one point of
its schedule, and computes its key once.

    keep(i) = U(seed, stream, name, (offset + i) // block) >= round(rate * 2**32)

The offset is not part of the spec: it says where a span of the parameter starts (an
FSDP shard, a slice of a flat buffer), and every span of one spec draws from the same
stream, so any cut of the parameter gives the same bits as the whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from graddrop_dist.mask.counter_hash import MaskKey, check_drop_rate, mask_key, rescale_factor

_SOURCES = [Path(__file__).with_name(name) for name in ("counter_hash.py", "_kernel.c")]


@dataclass(frozen=True)
class MaskSpec:
    seed: int
    stream: int
    name: str  # the canonical parameter name
    rate: float  # the drop rate p
    block: int = 1  # elements sharing one draw: 1, a row, or the whole tensor
    rescale: bool = False  # kept values times 1 / (1 - p)
    key: MaskKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_drop_rate(self.rate)
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block}")
        object.__setattr__(self, "key", mask_key(seed=self.seed, stream=self.stream,
                                                 name=self.name, drop_rate=self.rate))

    @classmethod
    def of(cls, *, seed: int, stream: int, name: str, drop_rate: float, block: int = 1,
           rescale: bool = False) -> MaskSpec:
        """From the keyword names of the functional API (keep_mask, mask_gradient)."""
        return cls(seed, stream, name, drop_rate, block, rescale)

    @cached_property
    def scale(self) -> float:
        return rescale_factor(self.rate, self.rescale)

    @property
    def keeps_all(self) -> bool:
        return self.key.threshold == 0

    @property
    def drops_all(self) -> bool:
        """p = 1, or so close to 1 that the threshold rounds to "drop everything"."""
        return self.key.threshold >= 2**32

    def per_block(self) -> MaskSpec:
        """The same draws with one bit per block: block j's bit is this spec's draw j."""
        return MaskSpec(self.seed, self.stream, self.name, self.rate, 1, self.rescale)


def mask_code_version() -> str:
    """A digest of the code that decides the bits: ranks must agree on it."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in _SOURCES)).hexdigest()[:16]
