"""The mask is a fair coin: right rate, and independent across elements, names, streams
and seeds. Bounds are 4 binomial standard deviations (a false alarm ~1 in 16,000)."""

from __future__ import annotations

import math

import pytest
import torch

from graddrop_dist import keep_mask

N = 1_000_000
BASE = dict(seed=11, stream=0, name="roberta.encoder.layer.3.output.dense.weight")


def four_sigma(p: float, n: int = N) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("offset", [0, 2**33 + 7])
def test_dropped_fraction_within_four_sigma(rate, offset):
    dropped = 1.0 - keep_mask(N, **BASE, drop_rate=rate, offset=offset).double().mean().item()
    assert abs(dropped - rate) <= four_sigma(rate)


def joint_drop(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((~a) & (~b)).double().mean().item()


@pytest.mark.parametrize("change", [dict(name="roberta.encoder.layer.3.output.dense.bias"),
                                    dict(stream=1), dict(seed=12)])
def test_masks_of_different_keys_are_independent(change):
    # Independent coins drop together with probability p^2.
    p = 0.5
    a = keep_mask(N, **BASE, drop_rate=p)
    b = keep_mask(N, **{**BASE, **change}, drop_rate=p)
    assert abs(joint_drop(a, b) - p * p) <= four_sigma(p * p)


@pytest.mark.parametrize("lag", [1, 2, 32, 4096])
def test_neighbouring_elements_are_independent(lag):
    p = 0.3
    mask = keep_mask(N + lag, **BASE, drop_rate=p)
    assert abs(joint_drop(mask[:-lag], mask[lag:]) - p * p) <= four_sigma(p * p)


def test_consecutive_streams_do_not_repeat_a_mask():
    masks = [keep_mask(4096, **{**BASE, "stream": step}, drop_rate=0.5) for step in range(50)]
    distinct = {tuple(mask.nonzero().flatten().tolist()) for mask in masks}
    assert len(distinct) == 50
