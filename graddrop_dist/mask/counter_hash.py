"""The GradDrop mask: a counter-based uniform, a pure function of (seed, stream, name, index).

    keep(i) = U(seed, stream, name, (offset + i) // block) >= round(drop_rate * 2**32)

U is two rounds of a 32-bit integer mixer over the 64-bit global draw index, keyed by a
64-bit digest of (seed, stream, name). Nothing depends on the process, the device, the
shard layout or a generator's state, so every rank of every backend computes the same
bits for the same global element (docs/METHOD.md, "The mask").

This module is the *reference* implementation: plain torch integer ops with no overflow
anywhere (products are split so they stay below 2**63), valid on every device. The fused
CPU kernel in `fused.py` is tested bit for bit against it.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
_KEY_DOMAIN = b"graddrop-dist/mask/v1"


class MaskKey(NamedTuple):
    """The two 32-bit keys of one (seed, stream, name) and the integer drop threshold."""

    k0: int
    k1: int
    threshold: int  # in [0, 2**32]: 0 keeps everything, 2**32 drops everything


def check_drop_rate(drop_rate: float) -> float:
    rate = float(drop_rate)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate!r}")
    return rate


def mask_key(*, seed: int, stream: int, name: str, drop_rate: float) -> MaskKey:
    """Derive the keys host-side once per tensor; blake2b is stable across processes."""
    rate = check_drop_rate(drop_rate)
    return MaskKey(*stream_keys(seed, stream, name), round(rate * 2**32))


def stream_keys(seed: int, stream: int, name: str) -> tuple[int, int]:
    """(k0, k1): the little-endian halves of blake2b-64 of "domain|seed|stream|name"."""
    return DIGEST_HALVES.unpack(stream_digest(seed, stream, name))


def stream_digest(seed: int, stream: int, name: str) -> bytes:
    """The 8 bytes k0, k1 are read from, little-endian (made for every masked parameter at
    every step: kept to a few operations)."""
    message = b"%s|%d|%d|%s" % (_KEY_DOMAIN, int(seed), int(stream), name.encode("utf-8"))
    return hashlib.blake2b(message, digest_size=8).digest()


DIGEST_HALVES = struct.Struct("<II")  # (k0, k1) from a stream_digest


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for int64 x in [0, 2**32), without signed overflow."""
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_MULTIPLIERS[0])
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_MULTIPLIERS[1])
    return x ^ (x >> 16)


def uniform_draws(draw_index: torch.Tensor, key: MaskKey) -> torch.Tensor:
    """U as uint32 values held in int64, for int64 global draw indices >= 0."""
    low = draw_index & _MASK32
    high_key = key.k1 ^ _mul32(draw_index >> 32, _GOLDEN)
    return _mix(_mix(low ^ key.k0) ^ high_key)


def _check_span(numel: int, offset: int, block: int) -> None:
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if offset + numel > 2**63 - 1:
        raise ValueError("offset + numel must fit in a signed 64-bit index")


def reference_keep_mask(numel: int, *, seed: int, stream: int, name: str,
                        drop_rate: float, offset: int = 0, block: int = 1,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """keep_mask computed with plain torch ops (the reference every fast path must match)."""
    _check_span(numel, offset, block)
    key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
    if key.threshold == 0:
        return torch.ones(numel, dtype=torch.bool, device=device)
    if key.threshold >= 2**32:
        return torch.zeros(numel, dtype=torch.bool, device=device)
    index = torch.arange(numel, dtype=torch.int64, device=device) + offset
    if block > 1:
        index = index // block
    return uniform_draws(index, key) >= key.threshold


def rescale_factor(drop_rate: float, rescale: bool) -> float:
    """1 / (1 - p) when rescaling (the kept gradient keeps its expectation), else 1."""
    rate = check_drop_rate(drop_rate)
    if not rescale or rate in (0.0, 1.0):
        return 1.0
    return 1.0 / (1.0 - rate)


def reference_mask_gradient(grad: torch.Tensor, *, seed: int, stream: int, name: str,
                            drop_rate: float, rescale: bool = False, offset: int = 0,
                            block: int = 1) -> torch.Tensor:
    """Out-of-place masked gradient: kept elements (times 1/(1-p)), dropped ones +0.0."""
    keep = reference_keep_mask(grad.numel(), seed=seed, stream=stream, name=name,
                               drop_rate=drop_rate, offset=offset, block=block,
                               device=grad.device).view(grad.shape)
    scale = rescale_factor(drop_rate, rescale)
    kept = grad * scale if scale != 1.0 else grad
    return torch.where(keep, kept, torch.zeros((), dtype=grad.dtype, device=grad.device))
