"""Compaction's packing, one process: what is packed, unpacked, equals masking in place."""

from __future__ import annotations

import pytest
import torch

from graddrop_dist import GradDrop, GradDropConfig
from graddrop_dist.backends.compaction import Kept, padding


def _attached(**config):
    model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Linear(40, 3))
    return GradDrop(GradDropConfig(seed=11, drop_rate=0.6, exclude=(), **config)).attach(
        model)


@pytest.mark.parametrize("granularity", ["element", "row", "tensor"])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("span", [(0, None), (240, 480), (7, 333)])  # whole, rows, unaligned
def test_pack_then_unpack_is_masking_in_place(granularity, rescale, span):
    graddrop = _attached(granularity=granularity, rescale=rescale)
    name = "0.weight"  # 40 x 24
    start, length = span
    grad = torch.randn(960)
    window = grad[start:start + (length or 960)]
    expected = graddrop.mask_(name, window.clone(), offset=start)
    kept = Kept.of(graddrop, name, start, length)
    values = kept.pack(window)
    assert values.numel() == kept.count == int((expected != 0).sum())
    block = {"element": 1, "row": 24, "tensor": 960}[granularity]
    aligned = start % block == 0 and (length or 960) % block == 0
    assert (kept.blocks is not None) == (block > 1 and aligned)  # rows gathered whole
    out = torch.full_like(window, float("nan"))
    kept.unpack(out, values)
    assert torch.equal(out, expected)


def test_unmasked_parameter_and_padding():
    graddrop = _attached(include=("0.*",))
    grad = torch.randn(120)
    everything = Kept.of(graddrop, "1.weight")
    assert everything.count == 120 and torch.equal(everything.pack(grad), grad)
    gap = padding(5)
    assert gap.count == 0 and gap.pack(torch.randn(5)).numel() == 0
    out = torch.ones(5)
    gap.unpack(out, torch.zeros(0))
    assert torch.equal(out, torch.zeros(5))
