"""The fast paths: on CPU the C kernel in `_kernel.c`, built once per machine and loaded by
ctypes; on CUDA the Triton kernel of `triton_kernel.py` (fp32, bf16, fp16).

Why not a torch C++ extension: it needs the torch headers and takes ~45 s to build on two
cores, in every fresh CI run and on every cluster node; this file needs only a C compiler
and builds in about a second. ctypes releases the GIL during the call, so large tensors
are split into chunks that run on `torch.get_num_threads()` threads. If no compiler is
found, or GRADDROP_KERNEL=reference is set, every call uses the reference torch path
(same bits, slower); GRADDROP_KERNEL=fused makes a failed build an error instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from graddrop_dist.fs import cache_root, staged_file
from graddrop_dist.mask.counter_hash import (
    check_drop_rate,
    mask_key,
    reference_keep_mask,
    reference_mask_gradient,
    rescale_factor,
)

_SOURCE = Path(__file__).with_name("_kernel.c")
_CFLAGS = ("-O3", "-shared", "-fPIC", "-fno-strict-aliasing")
_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}
# Below this many elements a thread hand-off costs more than it saves.
_CHUNK = 1 << 20

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_load_failed = False
_pool: ThreadPoolExecutor | None = None


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but not its threads: submitting to it
    # would wait forever. Start a fresh pool on first use instead.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool_in_child)


def kernel_mode() -> str:
    mode = os.environ.get("GRADDROP_KERNEL", "auto")
    if mode not in ("auto", "fused", "reference"):
        raise ValueError(f"GRADDROP_KERNEL must be one of auto, fused, reference; got {mode!r}")
    return mode


def cache_dir() -> Path:
    return cache_root() / "kernels"


def _build() -> Path:
    source = _SOURCE.read_bytes()
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc/cc) on PATH")
    tag = hashlib.sha256(source + " ".join(_CFLAGS).encode() + compiler.encode()).hexdigest()[:16]
    target = cache_dir() / f"graddrop_kernel_{tag}.so"
    if target.exists():
        return target
    # Built under a private name, then renamed: ranks that build at once never load a
    # half-written library.
    try:
        with staged_file(target, suffix=".so") as partial:
            subprocess.run([compiler, *_CFLAGS, "-o", str(partial), str(_SOURCE)],
                           check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{compiler} failed: {error.stderr.strip()[:500]}") from None
    return target


def _load() -> ctypes.CDLL | None:
    global _library, _load_failed
    if _library is not None or _load_failed:
        return _library
    with _lock:
        if _library is None and not _load_failed:
            try:
                library = ctypes.CDLL(str(_build()))
                u32, i64, u64 = ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64
                library.graddrop_mask.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_int, i64, u64, u64, u32, u32, u32,
                                                  ctypes.c_float, ctypes.c_int]
                library.graddrop_keep.argtypes = [ctypes.c_void_p, i64, u64, u64, u32, u32,
                                                  u32]
                for packing in (library.graddrop_compress, library.graddrop_expand):
                    packing.restype = i64
                library.graddrop_compress.argtypes = [
                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, i64, u64, u64, u32, u32,
                    u32, ctypes.c_float, ctypes.c_int]
                library.graddrop_expand.argtypes = [ctypes.c_void_p, i64, ctypes.c_void_p,
                                                    ctypes.c_int, i64, u64, u64, u32, u32,
                                                    u32]
                _library = library
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
                if kernel_mode() == "fused":
                    raise RuntimeError(f"GRADDROP_KERNEL=fused but the kernel failed to build: "
                                       f"{error}") from error
                warnings.warn(f"graddrop_dist: fused mask kernel unavailable ({error}); "
                              "using the reference torch path", RuntimeWarning, stacklevel=3)
                _load_failed = True
    return _library


def fused_available() -> bool:
    return kernel_mode() != "reference" and _load() is not None


def _run_chunked(numel: int, call) -> None:
    """call(start, stop) over [0, numel), in parallel chunks when that pays."""
    global _pool
    threads = max(1, torch.get_num_threads())
    if threads == 1 or numel < 2 * _CHUNK:
        call(0, numel)
        return
    if _pool is None or _pool._max_workers != threads:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="graddrop")
    step = max(_CHUNK, -(-numel // threads))
    futures = [_pool.submit(call, start, min(start + step, numel))
               for start in range(0, numel, step)]
    for future in futures:
        future.result()


_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _use_triton(tensor: torch.Tensor) -> bool:
    """CUDA tensors go through the Triton kernel (GRADDROP_KERNEL=reference turns it off)."""
    if tensor.device.type != "cuda" or kernel_mode() == "reference":
        return False
    from graddrop_dist.mask.triton_kernel import triton_available  # imports triton

    return triton_available()


def _use_kernel(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu" and fused_available()


def keep_mask(numel: int, *, seed: int, stream: int, name: str, drop_rate: float,
              offset: int = 0, device: torch.device | str | None = None,
              block: int = 1) -> torch.Tensor:
    """Bool tensor: element i is True when global element `offset + i` of `name` is kept.

    `block` > 1 shares one draw among `block` consecutive global elements (row or whole
    tensor granularity). Sharding-invariant: keep_mask(N)[a:b] == keep_mask(b-a, offset=a).
    """
    key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
    probe = torch.empty(0, device=device)
    if _use_triton(probe) and 0 < key.threshold < 2**32 and offset >= 0 and block >= 1:
        from graddrop_dist.mask.triton_kernel import triton_keep

        return triton_keep(numel, key, offset=offset, block=block, device=probe.device)
    if not _use_kernel(probe) or key.threshold in (0, 2**32) or numel == 0:
        return reference_keep_mask(numel, seed=seed, stream=stream, name=name,
                                   drop_rate=drop_rate, offset=offset, block=block,
                                   device=device)
    if offset < 0 or block < 1:
        raise ValueError(f"offset must be >= 0 and block >= 1, got {offset}, {block}")
    keep = torch.empty(numel, dtype=torch.bool)
    base = keep.data_ptr()
    library = _load()

    def call(start: int, stop: int) -> None:
        library.graddrop_keep(base + start, stop - start, offset + start, block, key.k0,
                              key.k1, key.threshold)

    _run_chunked(numel, call)
    return keep


def mask_gradient(grad: torch.Tensor, *, seed: int, stream: int, name: str,
                  drop_rate: float, rescale: bool = False, offset: int = 0, block: int = 1,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Masked (and optionally rescaled) gradient, one pass over memory on CPU.

    Writes into `out` (which may be `grad` itself for in-place masking) or a new tensor.
    Element j of `grad` is global element `offset + j` of parameter `name`.
    """
    check_drop_rate(drop_rate)
    if out is None:
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
    elif out.shape != grad.shape or out.dtype != grad.dtype or not out.is_contiguous():
        raise ValueError("out must be a contiguous tensor with grad's shape and dtype")
    if drop_rate == 0.0:
        return out.copy_(grad) if out is not grad else out
    if drop_rate == 1.0:
        return out.zero_()
    source = grad if grad.is_contiguous() else grad.contiguous()
    if grad.dtype in _TRITON_DTYPES and _use_triton(grad):
        key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
        if key.threshold >= 2**32:
            return out.zero_()
        from graddrop_dist.mask.triton_kernel import triton_mask

        return triton_mask(source, out, key, offset=offset, block=block,
                           scale=rescale_factor(drop_rate, rescale))
    if grad.dtype not in _DTYPE_CODES or not _use_kernel(grad):
        masked = reference_mask_gradient(source, seed=seed, stream=stream, name=name,
                                         drop_rate=drop_rate, rescale=rescale,
                                         offset=offset, block=block)
        return out.copy_(masked)
    key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
    if key.threshold >= 2**32:  # p so close to 1 that it rounds to "drop all"
        return out.zero_()
    scale = rescale_factor(drop_rate, rescale)
    size = source.element_size()
    src, dst, code = source.data_ptr(), out.data_ptr(), _DTYPE_CODES[grad.dtype]
    library = _load()

    def call(start: int, stop: int) -> None:
        library.graddrop_mask(src + start * size, dst + start * size, code, stop - start,
                              offset + start, block, key.k0, key.k1, key.threshold, scale,
                              int(scale != 1.0))

    _run_chunked(source.numel(), call)
    return out


def _packable(tensor: torch.Tensor, key) -> bool:
    return (tensor.dtype in _DTYPE_CODES and tensor.is_contiguous() and _use_kernel(tensor)
            and 0 < key.threshold < 2**32)


def compress(span: torch.Tensor, out: torch.Tensor, *, seed: int, stream: int, name: str,
             drop_rate: float, rescale: bool = False, offset: int = 0,
             block: int = 1) -> int | None:
    """Pack the kept values of a flat span, in order (times 1/(1-p) with rescale), at the
    start of `out` (contiguous, same dtype, room for the whole span), in one pass and
    without a mask in memory; returns how many, or None where the kernel does not apply
    (use the keep bits instead). Element j of the span is global element offset + j."""
    key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
    if not (_packable(span, key) and out.dtype == span.dtype and out.is_contiguous()
            and out.numel() >= span.numel()):
        return None
    scale = rescale_factor(drop_rate, rescale)
    return _load().graddrop_compress(
        span.data_ptr(), out.data_ptr(), _DTYPE_CODES[span.dtype], span.numel(), offset,
        block, key.k0, key.k1, key.threshold, scale, int(scale != 1.0))


def expand(packed: torch.Tensor, out: torch.Tensor, *, seed: int, stream: int, name: str,
           drop_rate: float, offset: int = 0, block: int = 1) -> bool:
    """Write packed values back where the mask keeps elements of `out` (a flat span),
    +0.0 elsewhere; False where the kernel does not apply."""
    key = mask_key(seed=seed, stream=stream, name=name, drop_rate=drop_rate)
    if not (_packable(out, key) and packed.dtype == out.dtype and packed.is_contiguous()):
        return False
    used = _load().graddrop_expand(packed.data_ptr(), packed.numel(), out.data_ptr(),
                                   _DTYPE_CODES[out.dtype], out.numel(), offset, block,
                                   key.k0, key.k1, key.threshold)
    if used != packed.numel():
        raise RuntimeError(f"GradDrop expand of {name}: the mask keeps {used} elements, "
                           f"{packed.numel()} values were received")
    return True
