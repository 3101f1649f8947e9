"""Every compiled instruction set of the C kernel (each this CPU runs, forced in turn) is
the reference bit for bit, on every path: fp32, bf16, fp16, rescaled or not, element,
row and tensor blocks, band masks, the keep bits, compaction's pack and unpack, and the
multi-threaded split; offsets past 2^32 and 2^40, NaN, inf, -0.0, denormals, zero tiles."""

from __future__ import annotations

import itertools

import pytest
import torch

from graddrop_dist.mask import dispatch, fused
from graddrop_dist.mask.counter_hash import reference_keep_mask, reference_mask_gradient
from graddrop_dist.mask.spec import MaskSpec

ISAS = fused.supported_isas()
BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def gradient(numel: int, dtype) -> torch.Tensor:
    grad = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 3
    grad[10:400] = 0.0  # whole zero tiles, not hashed
    grad[450] = float("nan")
    grad[451], grad[452], grad[453] = float("inf"), float("-inf"), -0.0
    grad[454] = 1e-40 if dtype == torch.float32 else 1e-7  # a denormal
    return grad.to(dtype)


def reference(spec: MaskSpec, grad: torch.Tensor, offset: int):
    """(masked gradient, keep bits) the torch reference computes (a band: two draws)."""
    kw = dict(seed=spec.seed, stream=spec.stream, name=spec.name, offset=offset,
              block=spec.block)
    keep = reference_keep_mask(grad.numel(), drop_rate=spec.rate, **kw)
    if not spec.banded:
        return reference_mask_gradient(grad, drop_rate=spec.rate, rescale=spec.rescale,
                                       **kw), keep
    keep &= ~reference_keep_mask(grad.numel(), drop_rate=spec.below, **kw)
    kept = grad * spec.scale if spec.scale != 1.0 else grad
    return torch.where(keep, kept, torch.zeros((), dtype=grad.dtype)), keep


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit; a NaN only as a NaN: torch's own vectorized bf16 rounding writes
    another NaN payload than its scalar path, so the reference has no one NaN to match."""
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a.view(BITS[a.dtype])[~nan],
                                                      b.view(BITS[b.dtype])[~nan])


def test_the_machine_runs_more_than_the_baseline():
    assert "default" in ISAS and fused.isa() == ISAS[-1]  # the best one is the one in use


CASES = list(itertools.product(
    [torch.float32, torch.bfloat16, torch.float16], [False, True], [1, 7, 5000],
    [0, 2**32 - 3000, 2**40 + 11], [(0.3, 1.0), (0.5, 0.9), (0.0, 0.6)]))


@pytest.mark.parametrize("isa", ISAS)
def test_every_path_is_the_reference(isa):
    with fused.use_isa(isa):
        for dtype, rescale, block, offset, (rate, below) in CASES:
            spec = MaskSpec(5, 9, "encoder.weight", rate, block, rescale, below)
            grad = gradient(5000, dtype)
            want, want_keep = reference(spec, grad, offset)
            case = f"{isa} {dtype} rescale={rescale} block={block} offset={offset} {rate}-{below}"
            assert same_bits(dispatch.apply_mask(spec, grad, offset=offset), want), case
            in_place = grad.clone()
            dispatch.apply_mask(spec, in_place, offset=offset, out=in_place)
            assert same_bits(in_place, want), case
            assert torch.equal(dispatch.keep_bits(spec, 5000, offset=offset), want_keep), case
            packed = torch.empty_like(grad)
            count = dispatch.compress(spec, grad, packed, offset=offset)
            assert count == int(want_keep.sum()), case
            assert same_bits(packed[:count], want[want_keep]), case
            out = torch.full_like(grad, 7.0)
            assert dispatch.expand(spec, packed[:count].clone(), out, offset=offset), case
            assert same_bits(out, torch.where(want_keep, want, 0.0)), case


@pytest.mark.parametrize("isa", ISAS)
def test_the_packed_key_calls_are_the_reference(isa):
    """The hooks' call (a whole gradient in place, the spec's packed key) and the buffers'
    call (many parameters' spans of one flat buffer, each at its own global offset, in
    one call) give the reference's bits; what lies between the spans is not touched."""
    masker = dispatch.in_place_masker()
    with fused.use_isa(isa):
        for dtype, rescale, block, offset, (rate, below) in CASES:
            spec = MaskSpec(5, 9, "encoder.weight", rate, block, rescale, below)
            other = MaskSpec(5, 9, "encoder.bias", 0.5, 1, rescale)
            grad, second = gradient(5000, dtype), gradient(777, dtype)
            case = f"{isa} {dtype} rescale={rescale} block={block} offset={offset} {rate}-{below}"
            whole = grad.clone()
            masker(spec, whole)
            assert same_bits(whole, reference(spec, grad, 0)[0]), case
            buffer = torch.cat([torch.full((3,), 7.0, dtype=dtype), grad, second,
                                torch.full((5,), 7.0, dtype=dtype)])
            dispatch.mask_spans(buffer, [(spec, 3, 5000, offset), (None, 5003, 777, 0),
                                         (other, 5003 + 100, 600, offset + 5)])
            assert same_bits(buffer[3:5003], reference(spec, grad, offset)[0]), case
            assert same_bits(buffer[5103:5703], reference(other, second[100:700],
                                                          offset + 5)[0]), case
            untouched = torch.cat([buffer[:3], buffer[5003:5103], buffer[5703:]])
            assert same_bits(untouched, torch.cat([torch.full((3,), 7.0, dtype=dtype),
                                                   second[:100], second[700:],
                                                   torch.full((5,), 7.0, dtype=dtype)])), case


def test_a_span_outside_its_buffer_is_refused_before_anything_is_written():
    spec = MaskSpec(5, 9, "encoder.weight", 0.5)
    buffer = gradient(1000, torch.float32)
    before = buffer.clone()
    with pytest.raises(ValueError, match=r"span \[900, 1100\) of encoder.weight"):
        dispatch.mask_spans(buffer, [(spec, 0, 500, 0), (spec, 900, 200, 0)])
    assert same_bits(buffer, before)


@pytest.mark.parametrize("isa", ISAS)
def test_the_threaded_split_draws_the_same_bits(isa, monkeypatch):
    """Large calls run on OpenMP threads, cut at tiles; the cuts change no bit, at an
    offset whose 2^32 boundary falls inside a thread's chunk."""
    spec = MaskSpec(1, 2, "embeddings.word_embeddings.weight", 0.5)
    grad = gradient(3 * 2**20 + 77, torch.float32)
    offset = 2**32 - 2**20 - 5
    with fused.use_isa(isa):
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            threaded = dispatch.apply_mask(spec, grad, offset=offset)
            keep = dispatch.keep_bits(spec, grad.numel(), offset=offset)
        finally:
            torch.set_num_threads(before)
        assert same_bits(threaded, dispatch.apply_mask(spec, grad, offset=offset))
    want, want_keep = reference(spec, grad, offset)
    assert same_bits(threaded, want) and torch.equal(keep, want_keep)


def test_forcing_an_instruction_set_the_cpu_lacks_is_one_line():
    with pytest.raises(ValueError, match="instruction set 'sse9': this CPU runs"):
        with fused.use_isa("sse9"):
            pass
