"""Which bits, as one value: `MaskSpec` names the draw of one parameter at one point of
its schedule, and computes its key once.

    keep(i) = round(rate * 2**32) <= U(seed, stream, name, (offset + i) // block)
                                     <  round(below * 2**32)

The offset is not part of the spec: it says where a span of the parameter starts (an
FSDP shard, a slice of a flat buffer), and every span of one spec draws from the same
stream, so any cut of the parameter gives the same bits as the whole.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from graddrop_dist.mask.counter_hash import (DIGEST_HALVES, MaskKey, check_drop_rate, mask_key,
                                              rescale_factor, stream_digest)

_SOURCES = [Path(__file__).with_name(name) for name in ("counter_hash.py", "_kernel.c")]


@dataclass(frozen=True)
class MaskSpec:
    seed: int
    stream: int
    name: str  # the canonical parameter name
    rate: float  # the drop rate p
    block: int = 1  # elements sharing one draw: 1, a row, or the whole tensor
    rescale: bool = False  # kept values times 1 / (the fraction kept)
    below: float = 1.0  # draws at or above it are dropped too (a band; 1: no bound)
    key: MaskKey = field(init=False, repr=False, compare=False)
    # What every masked gradient asks, made with the spec (a new one per parameter and
    # step): a cached_property takes a lock on each first read, in the backward's hooks.
    scale: float = field(init=False, repr=False, compare=False)
    drawn: bool = field(init=False, repr=False, compare=False)
    kernel_args: tuple | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_drop_rate(self.rate)
        check_drop_rate(self.below)
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block}")
        object.__setattr__(self, "key", mask_key(seed=self.seed, stream=self.stream,
                                                 name=self.name, drop_rate=self.rate))
        object.__setattr__(self, "scale", self._scale())
        object.__setattr__(self, "drawn", self._drawn())
        object.__setattr__(self, "kernel_args", _kernel_args(self) if self.drawn else None)

    def with_stream(self, stream: int) -> MaskSpec:
        """The same mask drawn from another stream (the next step's): only the key is new,
        everything else is reused (made for every parameter at every step)."""
        digest = stream_digest(self.seed, stream, self.name)
        k0, k1 = DIGEST_HALVES.unpack(digest)
        spec = object.__new__(MaskSpec)
        fields = spec.__dict__
        fields.update(self.__dict__)
        fields["stream"] = stream
        fields["key"] = tuple.__new__(MaskKey, (k0, k1, self.key.threshold))
        if self.kernel_args is not None:  # only the keys change: bytes 8-16 of the packed
            (block, _, _, lo, width), scaling, packed = self.kernel_args
            fields["kernel_args"] = ((block, k0, k1, lo, width), scaling,
                                     packed[:8] + digest + packed[16:])
        return spec

    @classmethod
    def of(cls, *, seed: int, stream: int, name: str, drop_rate: float, block: int = 1,
           rescale: bool = False) -> MaskSpec:
        """From the keyword names of the functional API (keep_mask, mask_gradient)."""
        return cls(seed, stream, name, drop_rate, block, rescale)

    def _scale(self) -> float:
        """Kept values are multiplied by it: 1, or 1 / (the fraction kept) when rescaling."""
        if not self.banded:
            return rescale_factor(self.rate, self.rescale)
        kept = self.below - self.rate
        return 1.0 / kept if self.rescale and 0.0 < kept < 1.0 else 1.0

    @property
    def banded(self) -> bool:
        """Whether draws are dropped above as well as below (`below` < 1)."""
        return self.below < 1.0

    @property
    def keeps_all(self) -> bool:
        return self.key.threshold == 0 and not self.banded

    @property
    def drops_all(self) -> bool:
        """p = 1 (or so close that the threshold rounds to "drop everything"), or an empty
        band."""
        return self.key.threshold >= 2**32 or (self.banded and self.ceiling().key.threshold
                                                <= self.key.threshold)

    def _drawn(self) -> bool:
        """Whether the bits need drawing: neither everything kept nor everything dropped
        (nor a band that keeps every draw)."""
        if self.keeps_all or self.drops_all:
            return False
        return not (self.key.threshold == 0 and self.banded
                    and self.ceiling().key.threshold >= 2**32)

    @cached_property
    def band(self) -> tuple[int, int]:
        """(lo, width): a draw U is kept when lo <= U < lo + width, as 32-bit integers
        (what the C kernel compares: (U - lo) < width). Only for a spec that neither
        keeps nor drops everything."""
        lo = self.key.threshold
        high = self.ceiling().key.threshold if self.banded else 2**32
        width = high - lo
        if not 0 <= lo < 2**32 or not 0 < width < 2**32:
            raise ValueError(f"{self.name}: no band to draw (keeps or drops everything)")
        return lo, width

    def floor(self) -> MaskSpec:
        """The band's lower edge alone: keep(i) = U >= rate."""
        return MaskSpec(self.seed, self.stream, self.name, self.rate, self.block)

    def ceiling(self) -> MaskSpec:
        """The band's upper edge as a spec of its own: keep(i) = U >= below."""
        return MaskSpec(self.seed, self.stream, self.name, self.below, self.block)

    def per_block(self) -> MaskSpec:
        """The same draws with one bit per block: block j's bit is this spec's draw j."""
        return MaskSpec(self.seed, self.stream, self.name, self.rate, 1, self.rescale,
                        self.below)


# The C kernel's graddrop_key struct: block (u64), k0, k1, lo, width (u32), scale (f32),
# rescale (i32); 32 bytes, no padding.
_PACKED_KEY = struct.Struct("<QIIIIfi")


def _kernel_args(spec: MaskSpec) -> tuple:
    """block, k0, k1 and the band (lo, width): what every kernel call passes after the
    offset; scale and whether to rescale after them; the same packed as the kernel's
    `graddrop_key` (the hooks' and the buffers' calls pass that one pointer)."""
    lo, width = spec.band
    band, scaling = (spec.block, spec.key.k0, spec.key.k1, lo, width), \
        (spec.scale, int(spec.scale != 1.0))
    return band, scaling, _PACKED_KEY.pack(*band, *scaling)


def mask_code_version() -> str:
    """A digest of the code that decides the bits: ranks must agree on it."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in _SOURCES)).hexdigest()[:16]
