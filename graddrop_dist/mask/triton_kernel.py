"""The GradDrop mask on CUDA: one Triton kernel reads each gradient element once, hashes
its global index with the same counter-based function as counter_hash.py, and writes
the masked (optionally rescaled) value; a second writes keep bits only.

Bit-for-bit the reference: the mixer is done in uint32 lanes (wrap-around multiplication
is the reference's `mod 2**32`), the index in int64, the comparison as integers against
the same threshold, the rescale as `float32(g) * float32(scale)` rounded to the gradient's
dtype (what torch's `grad * scale` computes). The tests run these kernels under Triton's
interpreter on CPU (TRITON_INTERPRET=1) against the reference; benchmarks/gpu_check.py
checks them on a GPU.
"""

from __future__ import annotations

import torch

from graddrop_dist.mask.counter_hash import MaskKey

_BLOCK = 1024


try:  # a CUDA build of torch brings triton; the CPU build does not need it
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def triton_available() -> bool:
    return triton is not None


if triton is not None:  # kernels must be module globals: Triton resolves names there
    @triton.jit
    def mix(x):
        x = x ^ (x >> 16)
        x = x * 0x7FEB352D
        x = x ^ (x >> 15)
        x = x * 0x846CA68B
        return x ^ (x >> 16)

    @triton.jit
    def to_bf16_bits(value):
        """float32 -> bfloat16 bits, round to nearest even, NaN -> 0x7FC0: torch's rounding,
        written out because Triton's interpreter truncates (the GPU path would round)."""
        bits = value.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return tl.where(value != value, 0x7FC0, rounded).to(tl.uint16)

    @triton.jit
    def keep_bits(start, offset, n, block, k0, k1, threshold, BLOCK: tl.constexpr,
                  BLOCKED: tl.constexpr):
        local = start + tl.arange(0, BLOCK)
        index = offset + local  # int64: global element index
        if BLOCKED:
            index = index // block
        low = (index & 0xFFFFFFFF).to(tl.uint32)
        high = (index >> 32).to(tl.uint32)
        high_key = k1.to(tl.uint32) ^ (high * 0x9E3779B9)
        draw = mix(mix(low ^ k0.to(tl.uint32)) ^ high_key)
        return local, local < n, draw >= threshold.to(tl.uint32)

    # Keys and offsets vary per call: do not specialise on their values (a key equal to 1
    # would otherwise become a compile-time constant).
    @triton.jit(do_not_specialize=["n", "offset", "block", "k0", "k1", "threshold"])
    def mask_kernel(src, dst, n, offset, block, k0, k1, threshold, scale,
                    BLOCK: tl.constexpr, BLOCKED: tl.constexpr, RESCALE: tl.constexpr,
                    BF16_OUT: tl.constexpr):
        start = tl.program_id(0).to(tl.int64) * BLOCK
        local, inside, keep = keep_bits(start, offset, n, block, k0, k1, threshold, BLOCK,
                                        BLOCKED)
        grad = tl.load(src + local, mask=inside, other=0.0)
        value = grad.to(tl.float32)
        if RESCALE:
            value = value * scale
        masked = tl.where(keep, value, 0.0)
        if BF16_OUT:
            tl.store(dst.to(tl.pointer_type(tl.uint16)) + local, to_bf16_bits(masked),
                     mask=inside)
        else:
            tl.store(dst + local, masked.to(dst.dtype.element_ty), mask=inside)

    @triton.jit(do_not_specialize=["n", "offset", "block", "k0", "k1", "threshold"])
    def keep_kernel(out, n, offset, block, k0, k1, threshold, BLOCK: tl.constexpr,
                    BLOCKED: tl.constexpr):
        start = tl.program_id(0).to(tl.int64) * BLOCK
        local, inside, keep = keep_bits(start, offset, n, block, k0, k1, threshold, BLOCK,
                                        BLOCKED)
        tl.store(out + local, keep.to(tl.int8), mask=inside)


def _grid(numel: int):
    return (max(1, -(-numel // _BLOCK)),)


def triton_mask(source: torch.Tensor, out: torch.Tensor, key: MaskKey, *, offset: int,
                block: int, scale: float) -> torch.Tensor:
    """out = source masked (times scale); 0 < key.threshold < 2**32, both contiguous."""
    numel = source.numel()
    if numel:
        mask_kernel[_grid(numel)](source, out, numel, offset, block, key.k0, key.k1,
                                  key.threshold, scale, BLOCK=_BLOCK, BLOCKED=block > 1,
                                  RESCALE=scale != 1.0,
                                  BF16_OUT=out.dtype == torch.bfloat16)
    return out


def triton_keep(numel: int, key: MaskKey, *, offset: int, block: int,
                device: torch.device) -> torch.Tensor:
    keep = torch.empty(numel, dtype=torch.bool, device=device)
    if numel:
        keep_kernel[_grid(numel)](keep.view(torch.int8), numel, offset, block, key.k0,
                                  key.k1, key.threshold, BLOCK=_BLOCK, BLOCKED=block > 1)
    return keep
