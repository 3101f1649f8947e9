"""The CPU fast path: the C kernel in `_kernel.c`, built once per machine and loaded by
ctypes (fp32, bf16). `dispatch.py` decides when it is used.

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
import shlex
import shutil
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from graddrop_dist.fs import cache_root, staged_file
from graddrop_dist.mask.counter_hash import MaskKey

_SOURCE = Path(__file__).with_name("_kernel.c")
_CFLAGS = ("-O3", "-shared", "-fPIC", "-fno-strict-aliasing")
_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}
# Below this many elements a thread hand-off costs more than it saves.
_CHUNK = 1 << 20

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_load_failed = False
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0


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


def compiler_command() -> list[str]:
    """$CC split as a shell splits it (`CC="gcc -std=c99"`), else gcc or cc from PATH."""
    configured = os.environ.get("CC", "").strip()
    if configured:
        command = shlex.split(configured)
        if shutil.which(command[0]) is None:
            raise RuntimeError(f"CC={configured}: {command[0]} is not an executable on PATH")
        return command
    found = shutil.which("gcc") or shutil.which("cc")
    if found is None:
        raise RuntimeError("no C compiler (gcc/cc) on PATH")
    return [found]


def _build() -> Path:
    source = _SOURCE.read_bytes()
    compiler = compiler_command()
    tag = hashlib.sha256(source + " ".join([*_CFLAGS, *compiler]).encode()).hexdigest()[:16]
    target = cache_dir() / f"graddrop_kernel_{tag}.so"
    if target.exists():
        return target
    # Built under a private name, then renamed: ranks that build at once never load a
    # half-written library.
    try:
        with staged_file(target, suffix=".so") as partial:
            subprocess.run([*compiler, *_CFLAGS, "-o", str(partial), str(_SOURCE)],
                           check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as error:
        said = error.stderr.strip()[:500] or f"exit status {error.returncode}, no message"
        raise RuntimeError(f"{shlex.join(compiler)} failed: {said}") from None
    return target


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside graddrop_dist.mask: a warning names the
    code that asked for a mask, not the dispatcher."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
            "graddrop_dist.mask"):
        frame, level = frame.f_back, level + 1
    return level


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
                              "using the reference torch path", RuntimeWarning,
                              stacklevel=_caller_stacklevel())
                _load_failed = True
    return _library


def fused_available() -> bool:
    return kernel_mode() != "reference" and _load() is not None


def _run_chunked(numel: int, call) -> None:
    """call(start, stop) over [0, numel), in parallel chunks when that pays."""
    global _pool, _pool_threads
    threads = max(1, torch.get_num_threads())
    if threads == 1 or numel < 2 * _CHUNK:
        call(0, numel)
        return
    if _pool is None or _pool_threads != threads:
        _pool, _pool_threads = ThreadPoolExecutor(max_workers=threads,
                                                  thread_name_prefix="graddrop"), threads
    step = max(_CHUNK, -(-numel // threads))
    futures = [_pool.submit(call, start, min(start + step, numel))
               for start in range(0, numel, step)]
    for future in futures:
        future.result()


def handles(tensor: torch.Tensor) -> bool:
    """Whether the C kernel masks this tensor (CPU, fp32 or bf16, kernel built)."""
    return tensor.device.type == "cpu" and tensor.dtype in _DTYPE_CODES and fused_available()


def fused_keep(numel: int, key: MaskKey, *, offset: int, block: int) -> torch.Tensor:
    """Keep bits of global elements [offset, offset + numel), on the CPU."""
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


def fused_mask(source: torch.Tensor, out: torch.Tensor, key: MaskKey, *, offset: int,
               block: int, scale: float) -> torch.Tensor:
    """One pass: `out` (may be `source`) gets source's kept values times `scale`, +0.0
    elsewhere. Both contiguous, same shape and dtype."""
    size = source.element_size()
    src, dst, code = source.data_ptr(), out.data_ptr(), _DTYPE_CODES[source.dtype]
    library = _load()

    def call(start: int, stop: int) -> None:
        library.graddrop_mask(src + start * size, dst + start * size, code, stop - start,
                              offset + start, block, key.k0, key.k1, key.threshold, scale,
                              int(scale != 1.0))

    _run_chunked(source.numel(), call)
    return out


def fused_compress(span: torch.Tensor, out: torch.Tensor, key: MaskKey, *, offset: int,
                   block: int, scale: float) -> int:
    """Pack the kept values of a flat span (times `scale`) at the start of `out`, in one
    pass with no mask in memory; returns how many."""
    return _load().graddrop_compress(
        span.data_ptr(), out.data_ptr(), _DTYPE_CODES[span.dtype], span.numel(), offset,
        block, key.k0, key.k1, key.threshold, scale, int(scale != 1.0))


def fused_expand(packed: torch.Tensor, out: torch.Tensor, key: MaskKey, *, offset: int,
                 block: int) -> int:
    """Write packed values where the mask keeps elements of the flat span `out`, +0.0
    elsewhere; returns how many values the mask keeps there."""
    return _load().graddrop_expand(packed.data_ptr(), packed.numel(), out.data_ptr(),
                                   _DTYPE_CODES[out.dtype], out.numel(), offset, block,
                                   key.k0, key.k1, key.threshold)
