"""The one place that chooses how a mask is computed: Triton on CUDA, the C kernel on the
CPU (fp32, bf16, fp16; band masks too), the torch reference otherwise or under
GRADDROP_KERNEL=reference. All three give the same bits (tests/unit/test_mask_*.py).

Every application of a mask to gradient values is announced to RECORDERS: the hook the
tests' recorder (graddrop_dist/testing/recording.py) fills to see which bits each backend
applied, at which offsets. In training it is empty, and announcing costs one check.
"""

from __future__ import annotations

from typing import Callable

import torch

from graddrop_dist.mask import fused
from graddrop_dist.mask.counter_hash import reference_keep_mask, reference_mask_gradient
from graddrop_dist.mask.spec import MaskSpec

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
RECORDERS: list[Callable[[MaskSpec, int, int], None]] = []


def _triton_handles(tensor: torch.Tensor) -> bool:
    if tensor.device.type != "cuda" or fused.kernel_mode() == "reference":
        return False
    from graddrop_dist.mask.triton_kernel import triton_available  # imports triton

    return triton_available() and tensor.dtype in _TRITON_DTYPES


# ------------------------------------------------------------------------------ recorders
def announce(spec: MaskSpec, offset: int, length: int) -> None:
    if RECORDERS:
        for recorder in list(RECORDERS):
            recorder(spec, offset, length)


# ------------------------------------------------------------------------------ the bits
def keep_bits(spec: MaskSpec, length: int, *, offset: int = 0,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Bool tensor: element i is True when global element `offset + i` is kept."""
    probe = torch.empty(0, device=device)
    if spec.drawn and length > 0 and offset >= 0:
        if probe.device.type == "cpu" and fused.fused_available():
            return fused.fused_keep(length, spec, offset=offset)
        if _triton_handles(probe.float()):
            from graddrop_dist.mask.triton_kernel import triton_keep

            return triton_keep(length, spec, offset=offset, device=probe.device)
    if spec.banded:  # rate <= U < below: kept by the floor, not by the ceiling
        return keep_bits(spec.floor(), length, offset=offset, device=device) & \
            ~keep_bits(spec.ceiling(), length, offset=offset, device=device)
    return reference_keep_mask(length, seed=spec.seed, stream=spec.stream, name=spec.name,
                               drop_rate=spec.rate, offset=offset, block=spec.block,
                               device=device)


def apply_mask(spec: MaskSpec, grad: torch.Tensor, *, offset: int = 0,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """The masked gradient (kept values times spec.scale, +0.0 elsewhere) in `out`, which
    may be `grad` itself, or in a new tensor. Element j is global element offset + j."""
    if out is None:
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
    elif out.shape != grad.shape or out.dtype != grad.dtype or not out.is_contiguous():
        raise ValueError("out must be a contiguous tensor with grad's shape and dtype")
    announce(spec, offset, grad.numel())
    if spec.drawn and offset >= 0 and fused.handles(grad):  # the common case, first
        source = grad if grad.is_contiguous() else grad.contiguous()
        return fused.fused_mask(source, out, spec, offset=offset)
    if spec.rate == 0.0 and not spec.banded:
        return out.copy_(grad) if out is not grad else out
    if spec.drops_all:
        return out.zero_()
    source = grad if grad.is_contiguous() else grad.contiguous()
    if spec.drawn and offset >= 0:
        if _triton_handles(grad):
            from graddrop_dist.mask.triton_kernel import triton_mask

            return triton_mask(source, out, spec, offset=offset)
    if spec.banded:  # two draws per element: the keep bits, then the reference's formula
        keep = keep_bits(spec, grad.numel(), offset=offset, device=grad.device)
        kept = source * spec.scale if spec.scale != 1.0 else source
        return out.copy_(torch.where(keep.view(grad.shape), kept,
                                     torch.zeros((), dtype=grad.dtype, device=grad.device)))
    return out.copy_(reference_mask_gradient(
        source, seed=spec.seed, stream=spec.stream, name=spec.name, drop_rate=spec.rate,
        rescale=spec.rescale, offset=offset, block=spec.block))


def mask_in_place(spec: MaskSpec, grad: torch.Tensor) -> None:
    """apply_mask(spec, grad, out=grad) for a contiguous `grad`, with the fewest steps
    before the C kernel."""
    in_place_masker()(spec, grad)


def in_place_masker() -> Callable[[MaskSpec, torch.Tensor], None]:
    """mask_in_place as the hooks of one backward call it on each gradient: taken once per
    backward, so the kernel mode is read then rather than for every parameter, and where
    the C kernel serves this process, a call with the spec's packed key. Per parameter,
    Python's share of a masked bias is larger than the kernel's."""
    return _mask_in_place_keyed if fused.fused_available() else _apply_in_place


def _mask_in_place_keyed(spec: MaskSpec, grad: torch.Tensor) -> None:
    """The C kernel is loaded: it masks what it handles, the spec's packed key passed."""
    if spec.drawn and grad.dtype in fused.DTYPES and grad.is_cpu and grad.is_contiguous():
        if RECORDERS:
            announce(spec, 0, grad.numel())
        fused.fused_mask_keyed(grad, spec)
    else:
        apply_mask(spec, grad, out=grad)


def _apply_in_place(spec: MaskSpec, grad: torch.Tensor) -> None:
    apply_mask(spec, grad, out=grad)


def mask_spans(buffer: torch.Tensor, spans) -> None:
    """Mask spans of one flat, contiguous buffer in place: `spans` holds (spec, start,
    length, offset), `length` elements from element `start` of the buffer being the global
    elements [offset, offset + length) of spec's parameter (a spec of None: left alone).
    Where the C kernel handles the buffer, one call masks every drawn span (a DDP bucket
    or an FSDP buffer holds dozens of parameters); otherwise span by span."""
    spans = [span for span in spans if span[0] is not None and span[2] > 0]
    if buffer.is_contiguous() and fused.handles(buffer):
        drawn = [span for span in spans if span[0].drawn]
        fused.fused_mask_spans(buffer, drawn)
        for spec, _, length, offset in drawn if RECORDERS else ():
            announce(spec, offset, length)
        spans = [span for span in spans if not span[0].drawn]
    for spec, start, length, offset in spans:
        piece = buffer[start:start + length]
        apply_mask(spec, piece, offset=offset, out=piece)


# ------------------------------------------------------------------------------ packing
def _packs(tensor: torch.Tensor, spec: MaskSpec) -> bool:
    return tensor.is_contiguous() and fused.handles(tensor) and spec.drawn


def compress(spec: MaskSpec, span: torch.Tensor, out: torch.Tensor, *,
             offset: int = 0) -> int | None:
    """Pack the kept values of a flat span, in order (times spec.scale), at the start of
    `out` (contiguous, same dtype, room for the whole span) in one pass, with no mask in
    memory; how many, or None where only the keep bits can do it (then use keep_bits)."""
    if not (_packs(span, spec) and out.dtype == span.dtype and out.is_contiguous()
            and out.numel() >= span.numel()):
        return None
    return fused.fused_compress(span, out, spec, offset=offset)


def expand(spec: MaskSpec, packed: torch.Tensor, out: torch.Tensor, *,
           offset: int = 0) -> bool:
    """Write packed values back where the mask keeps elements of `out` (a flat span), +0.0
    elsewhere; False where the kernel does not apply (then use keep_bits)."""
    if not (_packs(out, spec) and packed.dtype == out.dtype and packed.is_contiguous()):
        return False
    used = fused.fused_expand(packed, out, spec, offset=offset)
    if used != packed.numel():
        raise RuntimeError(f"GradDrop expand of {spec.name}: the mask keeps {used} elements, "
                           f"{packed.numel()} values were received")
    return True


# ------------------------------------------------------------------------------ the API
def keep_mask(numel: int, *, seed: int, stream: int, name: str, drop_rate: float,
              offset: int = 0, device: torch.device | str | None = None,
              block: int = 1) -> torch.Tensor:
    """Bool tensor: element i is True when global element `offset + i` of `name` is kept.

    `block` > 1 shares one draw among `block` consecutive global elements (row or whole
    tensor granularity). Sharding-invariant: keep_mask(N)[a:b] == keep_mask(b-a, offset=a).
    """
    spec = MaskSpec.of(seed=seed, stream=stream, name=name, drop_rate=drop_rate,
                       block=block)
    return keep_bits(spec, numel, offset=offset, device=device)


def mask_gradient(grad: torch.Tensor, *, seed: int, stream: int, name: str,
                  drop_rate: float, rescale: bool = False, offset: int = 0, block: int = 1,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Masked (and optionally rescaled) gradient, one pass over memory where a kernel
    applies. Writes into `out` (which may be `grad` itself) or a new tensor."""
    spec = MaskSpec.of(seed=seed, stream=stream, name=name, drop_rate=drop_rate,
                       block=block, rescale=rescale)
    return apply_mask(spec, grad, offset=offset, out=out)
