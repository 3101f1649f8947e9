"""The GradDrop mask on CUDA: one Triton kernel reads each gradient element once, hashes
its global index with the same counter-based function as counter_hash.py, and writes
the masked (optionally rescaled) value; a second writes keep bits only.

Bit-for-bit the reference: the mixer is done in uint32 lanes (wrap-around multiplication
is the reference's `mod 2**32`), the comparison as integers against the same band
(`(U - lo) < width`, as the C kernel compares), the rescale as `float32(g) *
float32(scale)` rounded to the gradient's dtype (what torch's `grad * scale` computes).

Speed: `n` is specialised (Triton then knows when it divides by 16, and every load and
store becomes a 128-bit access); the keys are not (a key equal to 1 would become a
compile-time constant). At element granularity the host cuts a call at 2^32 boundaries
of the global index, so hi32(index) * GOLDEN is one scalar per call and the lanes are
32-bit; row and tensor blocks keep the 64-bit index. On a GPU the block size and warps
are autotuned per dtype; the tests run the kernels under Triton's interpreter on CPU
(TRITON_INTERPRET=1) against the reference, and compile them for sm_90 to read the PTX;
benchmarks/gpu_check.py checks them on a GPU.
"""

from __future__ import annotations

import os

import torch

_BLOCK = 1024  # under the interpreter (no autotuning there)
_GOLDEN = 0x9E3779B9
_SEGMENT = 2**32
_MAX_CALL = 2**30  # elements per launch: lane indices stay int32

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
    def keep_bits(local, offset, block, k0, k1, hk, lo, width, BLOCKED: tl.constexpr):
        """The keep bit of each lane. Element granularity: lo32 of the index is
        offset (a call's lo32, the host cut calls at 2^32) + local, hk folds hi32 in."""
        if BLOCKED:
            index = (offset + local.to(tl.int64)) // block  # int64: the global draw index
            low = (index & 0xFFFFFFFF).to(tl.uint32)
            high_key = k1.to(tl.uint32) ^ ((index >> 32).to(tl.uint32) * 0x9E3779B9)
        else:
            low = offset.to(tl.uint32) + local.to(tl.uint32)
            high_key = hk.to(tl.uint32)
        draw = mix(mix(low ^ k0.to(tl.uint32)) ^ high_key)
        return (draw - lo.to(tl.uint32)) < width.to(tl.uint32)

    _KEYS = ["offset", "block", "k0", "k1", "hk", "lo", "width"]

    @triton.jit(do_not_specialize=_KEYS)
    def mask_kernel(src, dst, n, offset, block, k0, k1, hk, lo, width, scale,
                    BLOCK: tl.constexpr, BLOCKED: tl.constexpr, RESCALE: tl.constexpr,
                    BF16_OUT: tl.constexpr):
        local = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = local < n
        keep = keep_bits(local, offset, block, k0, k1, hk, lo, width, BLOCKED)
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

    @triton.jit(do_not_specialize=_KEYS)
    def keep_kernel(out, n, offset, block, k0, k1, hk, lo, width, BLOCK: tl.constexpr,
                    BLOCKED: tl.constexpr):
        local = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        keep = keep_bits(local, offset, block, k0, k1, hk, lo, width, BLOCKED)
        tl.store(out + local, keep.to(tl.int8), mask=local < n)

    _CONFIGS = [triton.Config({"BLOCK": size}, num_warps=warps)
                for size in (1024, 2048, 4096) for warps in (4, 8)]
    # The autotuner keys on the tensors' dtypes too: one choice per dtype and path.
    tuned_mask_kernel = triton.autotune(_CONFIGS, key=["BLOCKED", "RESCALE"])(mask_kernel)
    tuned_keep_kernel = triton.autotune(_CONFIGS, key=["BLOCKED"])(keep_kernel)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _calls(numel: int, offset: int, block: int, k1: int):
    """(start, length, offset argument, hk) of each call: element granularity is cut at
    2^32 boundaries of the global index (lo32 and hi32's key are then per call), and
    every call holds at most 2^30 elements."""
    start = 0
    while start < numel:
        index = offset + start
        if block > 1:
            length = min(numel - start, _MAX_CALL)
            yield start, length, index, 0
        else:
            length = min(numel - start, _SEGMENT - index % _SEGMENT, _MAX_CALL)
            yield start, length, index % _SEGMENT, k1 ^ ((index >> 32) * _GOLDEN) % _SEGMENT
        start += length


def _launch(kernel, tuned, numel: int, args: tuple, **constants) -> None:
    if _interpreted():
        kernel[(triton.cdiv(numel, _BLOCK),)](*args, BLOCK=_BLOCK, **constants)
    else:
        tuned[lambda meta: (triton.cdiv(numel, meta["BLOCK"]),)](*args, **constants)


def triton_mask(source: torch.Tensor, out: torch.Tensor, spec, *, offset: int) -> torch.Tensor:
    """out = source masked (times the spec's scale); both contiguous."""
    key, scale = spec.key, spec.scale
    lo, width = spec.band
    flat_in, flat_out = source.view(-1), out.view(-1)
    for start, length, call_offset, hk in _calls(source.numel(), offset, spec.block, key.k1):
        args = (flat_in[start:], flat_out[start:], length, call_offset, spec.block, key.k0,
                key.k1, hk, lo, width, scale)
        _launch(mask_kernel, tuned_mask_kernel, length, args, BLOCKED=spec.block > 1,
                RESCALE=scale != 1.0, BF16_OUT=out.dtype == torch.bfloat16)
    return out


def triton_keep(numel: int, spec, *, offset: int, device: torch.device) -> torch.Tensor:
    key = spec.key
    lo, width = spec.band
    keep = torch.empty(numel, dtype=torch.bool, device=device)
    bits = keep.view(torch.int8)
    for start, length, call_offset, hk in _calls(numel, offset, spec.block, key.k1):
        args = (bits[start:], length, call_offset, spec.block, key.k0, key.k1, hk, lo, width)
        _launch(keep_kernel, tuned_keep_kernel, length, args, BLOCKED=spec.block > 1)
    return keep
