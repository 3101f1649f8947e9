"""Compaction's packing, one process: what is packed, unpacked, equals masking in place."""

from __future__ import annotations

import pytest
import torch

from graddrop_dist import GradDrop, GradDropConfig
from graddrop_dist.adapters.compaction import KeptBlocks, Padding, Whole, kept
from graddrop_dist.mask import dispatch


def pack(kept, span):
    out = torch.empty_like(span)
    return out[:kept.pack_into(span, out)]


def _attached(**config):
    model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Linear(40, 3))
    return GradDrop(GradDropConfig(seed=11, drop_rate=0.6, exclude=(), **config)).attach(
        model)


@pytest.mark.parametrize("granularity", ["element", "row", "tensor"])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("span", [(0, None), (240, 480), (7, 333)])  # whole, rows, unaligned
# fp32 / bf16: the fused compress / expand kernel; fp16: keep bits and a select
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pack_then_unpack_is_masking_in_place(granularity, rescale, span, dtype):
    graddrop = _attached(granularity=granularity, rescale=rescale)
    name = "0.weight"  # 40 x 24
    start, length = span
    grad = torch.randn(960).to(dtype)
    window = grad[start:start + (length or 960)]
    spec = graddrop.spec(name)
    expected = dispatch.apply_mask(spec, window.clone(), offset=start)
    described = kept(spec, start, length or 960)
    values = pack(described, window)
    assert values.numel() == described.count == int((expected != 0).sum())
    block = {"element": 1, "row": 24, "tensor": 960}[granularity]
    aligned = start % block == 0 and (length or 960) % block == 0
    assert isinstance(described, KeptBlocks) == (block > 1 and aligned)  # rows gathered whole
    out = torch.full_like(window, float("nan"))
    described.unpack(out, values)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(out.view(bits), expected.view(bits))


def test_fused_and_selecting_paths_pack_the_same_values(monkeypatch):
    graddrop = _attached(rescale=True)
    grad = torch.randn(960)
    fused = kept(graddrop.spec("0.weight"), 100, 700)
    values = pack(fused, grad[100:800])
    monkeypatch.setenv("GRADDROP_KERNEL", "reference")  # the kernel steps aside
    selecting = kept(graddrop.spec("0.weight"), 100, 700)
    assert torch.equal(pack(selecting, grad[100:800]), values)
    assert fused.count == selecting.count == values.numel()


def test_unmasked_parameter_and_padding():
    graddrop = _attached(include=("0.*",))
    grad = torch.randn(120)
    everything = kept(graddrop.spec("1.weight"), 0, 120)
    assert isinstance(everything, Whole) and graddrop.spec("1.weight") is None
    assert everything.count == 120 and torch.equal(pack(everything, grad), grad)
    gap = Padding(5)
    assert gap.count == 0 and pack(gap, torch.randn(5)).numel() == 0
    out = torch.ones(5)
    gap.unpack(out, torch.zeros(0))
    assert torch.equal(out, torch.zeros(5))


def test_expand_refuses_a_packed_buffer_of_the_wrong_length():
    from graddrop_dist.mask.spec import MaskSpec

    spec = MaskSpec(seed=1, stream=2, name="w", rate=0.5)
    span = torch.randn(1000)
    room = torch.empty(1000)
    packed = room[:dispatch.compress(spec, span, room)]
    out = torch.empty(1000)
    assert dispatch.expand(spec, packed, out)
    assert torch.equal(out, torch.where(out != 0, span, 0.0))
    with pytest.raises(RuntimeError, match="values were received"):
        dispatch.expand(spec, packed[:-1].clone(), out)
