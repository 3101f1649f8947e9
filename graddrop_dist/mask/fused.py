"""The CPU fast path: the C kernel in `_kernel.c`, built once per machine and loaded by
ctypes (fp32, bf16, fp16). `dispatch.py` decides when it is used.

Why not a torch C++ extension: it needs the torch headers and takes ~45 s to build on two
cores, in every fresh CI run and on every cluster node; this file needs only a C compiler
and builds in about a second. ctypes releases the GIL during the call. A large call runs
on `torch.get_num_threads()` OpenMP threads of torch's own OpenMP runtime (the kernel's
libgomp.so.1 binds to the copy torch loaded), so the mask and torch's kernels take turns
on one pool of threads instead of fighting over the cores. Without OpenMP (a compiler
that lacks it) the kernel runs on one thread.

The element loop is compiled for AVX-512, AVX2 and plain x86-64 (SSE2); the best one the
CPU runs is used, `use_isa` forces another (the tests check each against the reference),
and `GRADDROP_KERNEL_ISA` (avx512, avx2, default) picks one for a whole process. If no
compiler is found, or GRADDROP_KERNEL=reference is set, every call uses the reference
torch path (same bits, slower); GRADDROP_KERNEL=fused makes a failed build an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shlex
import shutil
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import torch

from graddrop_dist.fs import cache_root, staged_file

_SOURCE = Path(__file__).with_name("_kernel.c")
_CFLAGS = ("-O3", "-shared", "-fPIC", "-fno-strict-aliasing")
_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
DTYPES = frozenset(_DTYPE_CODES)  # what the kernel masks
ISAS = {"default": 0, "avx2": 1, "avx512": 2}

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_load_failed = False


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


def _compile(compiler: list[str], flags: tuple[str, ...], target: Path) -> None:
    # Built under a private name, then renamed: ranks that build at once never load a
    # half-written library.
    with staged_file(target, suffix=".so") as partial:
        subprocess.run([*compiler, *flags, "-o", str(partial), str(_SOURCE)], check=True,
                       capture_output=True, text=True, timeout=120)


def _build() -> Path:
    source = _SOURCE.read_bytes()
    compiler = compiler_command()
    failure = None
    for flags in ((*_CFLAGS, "-fopenmp"), _CFLAGS):  # one thread where OpenMP is missing
        tag = hashlib.sha256(source + " ".join([*flags, *compiler]).encode()).hexdigest()
        target = cache_dir() / f"graddrop_kernel_{tag[:16]}.so"
        if target.exists():
            return target
        try:
            _compile(compiler, flags, target)
            return target
        except subprocess.CalledProcessError as error:
            failure = failure or error
    said = failure.stderr.strip()[:500] or f"exit status {failure.returncode}, no message"
    raise RuntimeError(f"{shlex.join(compiler)} failed: {said}")


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside graddrop_dist.mask: a warning names the
    code that asked for a mask, not the dispatcher."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
            "graddrop_dist.mask"):
        frame, level = frame.f_back, level + 1
    return level


def _declare(library: ctypes.CDLL) -> None:
    c_int, u32, i64, u64, ptr = (ctypes.c_int, ctypes.c_uint32, ctypes.c_int64,
                                 ctypes.c_uint64, ctypes.c_void_p)
    band = [u64, u64, u32, u32, u32, u32]  # offset, block, k0, k1, lo, width
    library.graddrop_mask.argtypes = [ptr, ptr, c_int, i64, *band, ctypes.c_float, c_int,
                                      c_int]
    library.graddrop_keep.argtypes = [ptr, i64, *band, c_int]
    library.graddrop_mask_keyed.argtypes = [ptr, i64, c_int, ctypes.c_char_p, c_int]
    library.graddrop_mask_spans.argtypes = [ptr, c_int, ctypes.c_char_p, i64, c_int]
    library.graddrop_compress.argtypes = [ptr, ptr, c_int, i64, *band, ctypes.c_float, c_int]
    library.graddrop_expand.argtypes = [ptr, i64, ptr, c_int, i64, *band]
    for packing in (library.graddrop_compress, library.graddrop_expand):
        packing.restype = i64
    library.graddrop_set_isa.argtypes = library.graddrop_isa_supported.argtypes = [c_int]


def _load() -> ctypes.CDLL | None:
    global _library, _load_failed
    if _library is not None or _load_failed:
        return _library
    with _lock:
        if _library is None and not _load_failed:
            try:
                library = ctypes.CDLL(str(_build()))
                _declare(library)
                forced = os.environ.get("GRADDROP_KERNEL_ISA")
                if forced and (forced not in ISAS or library.graddrop_set_isa(
                        ISAS[forced]) < 0):
                    raise RuntimeError(f"GRADDROP_KERNEL_ISA={forced}: expected one this "
                                       f"CPU runs, of {', '.join(ISAS)}")
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


def isa() -> str:
    """The instruction set the element loop runs with."""
    code = _load().graddrop_isa()
    return next(name for name, value in ISAS.items() if value == code)


def supported_isas() -> list[str]:
    library = _load()
    return [name for name, code in ISAS.items() if library.graddrop_isa_supported(code)]


@contextlib.contextmanager
def use_isa(name: str):
    """Within the block the kernel runs instruction set `name` (one this CPU supports)."""
    library, before = _load(), isa()
    if name not in ISAS or library.graddrop_set_isa(ISAS[name]) < 0:
        raise ValueError(f"instruction set {name!r}: this CPU runs {supported_isas()}")
    try:
        yield
    finally:
        library.graddrop_set_isa(ISAS[before])


def handles(tensor: torch.Tensor) -> bool:
    """Whether the C kernel masks this tensor (CPU, fp32 / bf16 / fp16, kernel built).
    fused_mask may then be called (it assumes the library is loaded)."""
    return tensor.dtype in _DTYPE_CODES and tensor.is_cpu and fused_available()


def _threads() -> int:
    return max(1, torch.get_num_threads())


def fused_keep(numel: int, spec, *, offset: int) -> torch.Tensor:
    """Keep bits of global elements [offset, offset + numel), on the CPU."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    keep = torch.empty(numel, dtype=torch.bool)
    _load().graddrop_keep(keep.data_ptr(), numel, offset, *spec.kernel_args[0], _threads())
    return keep


def fused_mask(source: torch.Tensor, out: torch.Tensor, spec, *, offset: int) -> torch.Tensor:
    """One pass: `out` (may be `source`) gets source's kept values times the spec's
    scale, +0.0 elsewhere. Both contiguous, same shape and dtype."""
    band, scaling, _ = spec.kernel_args
    (_library or _load()).graddrop_mask(source.data_ptr(), out.data_ptr(),
                                        _DTYPE_CODES[source.dtype], source.numel(), offset,
                                        *band, *scaling, _threads())
    return out


def fused_mask_keyed(grad: torch.Tensor, spec) -> None:
    """Mask a whole contiguous gradient in place (global elements [0, numel)) with the
    spec's packed key: what the hooks call for every parameter, so it converts five
    arguments where fused_mask converts thirteen (each costs more than masking a bias)."""
    _library.graddrop_mask_keyed(grad.data_ptr(), grad.numel(), _DTYPE_CODES[grad.dtype],
                                 spec.kernel_args[2], _threads())


_SPAN = struct.Struct("<qqQ")  # graddrop_span's start, n and offset; its key follows


def fused_mask_spans(buffer: torch.Tensor, spans) -> None:
    """Mask many spans of one contiguous flat buffer in place in one call; `spans` holds
    (spec, start, length, offset): `length` elements from element `start` of the buffer
    are the global elements [offset, offset + length) of spec's parameter (drawn specs)."""
    numel = buffer.numel()
    table = []
    for spec, start, length, offset in spans:
        if start < 0 or length < 0 or offset < 0 or start + length > numel:
            raise ValueError(f"span [{start}, {start + length}) of {spec.name} at offset "
                             f"{offset} is not inside a buffer of {numel} elements")
        table.append(_SPAN.pack(start, length, offset) + spec.kernel_args[2])
    _library.graddrop_mask_spans(buffer.data_ptr(), _DTYPE_CODES[buffer.dtype],
                                 b"".join(table), len(table), _threads())


def fused_compress(span: torch.Tensor, out: torch.Tensor, spec, *, offset: int) -> int:
    """Pack the kept values of a flat span (times the scale) at the start of `out`, in
    one pass with no mask in memory; returns how many."""
    band, scaling, _ = spec.kernel_args
    return _load().graddrop_compress(span.data_ptr(), out.data_ptr(),
                                     _DTYPE_CODES[span.dtype], span.numel(), offset, *band,
                                     *scaling)


def fused_expand(packed: torch.Tensor, out: torch.Tensor, spec, *, offset: int) -> int:
    """Write packed values where the mask keeps elements of the flat span `out`, +0.0
    elsewhere; returns how many values the mask keeps there."""
    return _load().graddrop_expand(packed.data_ptr(), packed.numel(), out.data_ptr(),
                                   _DTYPE_CODES[out.dtype], out.numel(), offset,
                                   *spec.kernel_args[0])
