"""The mask as a pure function: slicing invariance, fused == reference, edge values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graddrop_dist import canonical_name, keep_mask, mask_gradient
from graddrop_dist.mask import reference_keep_mask, reference_mask_gradient
from graddrop_dist.mask.fused import fused_available

KEY = dict(seed=7, stream=3, name="encoder.layer.0.attention.self.query.weight")


def test_fused_kernel_builds_here():
    # The fast path must exist on the CI machine; otherwise every comparison below would
    # compare the reference with itself.
    assert fused_available()


@settings(max_examples=60, deadline=None)
@given(base=st.one_of(st.integers(0, 5000), st.integers(2**32 - 3000, 2**32 + 3000),
                      st.integers(0, 2**50)),
       numel=st.integers(0, 4000), cut=st.tuples(st.integers(0, 4000), st.integers(0, 4000)),
       block=st.sampled_from([1, 3, 64, 1000]), rate=st.sampled_from([0.1, 0.5, 0.97]))
def test_slice_equals_offset_mask(base, numel, cut, block, rate):
    a, b = sorted(min(c, numel) for c in cut)
    whole = keep_mask(numel, **KEY, drop_rate=rate, offset=base, block=block)
    part = keep_mask(b - a, **KEY, drop_rate=rate, offset=base + a, block=block)
    assert torch.equal(whole[a:b], part)
    reference = reference_keep_mask(b - a, **KEY, drop_rate=rate, offset=base + a,
                                    block=block)
    assert torch.equal(part, reference)


@pytest.mark.parametrize("offset", [0, 13, 2**32 - 1000, 3 * 2**32 + 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("block", [1, 37])
def test_fused_gradient_bitwise_equals_reference(offset, dtype, rescale, block):
    grad = (torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    grad[::17] = float("inf")
    grad[5::19] = -0.0
    fused = mask_gradient(grad, **KEY, drop_rate=0.3, rescale=rescale, offset=offset,
                          block=block)
    reference = reference_mask_gradient(grad, **KEY, drop_rate=0.3, rescale=rescale,
                                        offset=offset, block=block)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(fused.view(bits), reference.view(bits))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_place", [False, True])
def test_zero_rows_skipped_by_the_kernel_still_equal_the_reference(dtype, in_place):
    # An embedding gradient: most rows are +0.0 (tokens absent from the batch) and are
    # not hashed; a -0.0 row and rows starting mid-tile are, exactly like the reference.
    grad = torch.zeros(300, 100)
    grad[[3, 150, 299]] = torch.randn(3, 100, generator=torch.Generator().manual_seed(2))
    grad[7] = -0.0
    grad[9, 61] = 1.5  # one value in an otherwise zero tile
    grad = grad.to(dtype).view(-1)
    for offset in (0, 5, 2**32 - 640):
        expected = reference_mask_gradient(grad, **KEY, drop_rate=0.6, rescale=True,
                                           offset=offset)
        source = grad.clone()
        out = source if in_place else torch.full_like(grad, float("nan"))
        mask_gradient(source, **KEY, drop_rate=0.6, rescale=True, offset=offset, out=out)
        bits = torch.int32 if dtype == torch.float32 else torch.int16
        assert torch.equal(out.view(bits), expected.view(bits))


def test_in_place_and_large_chunked_paths_agree():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # several chunks on the thread pool
    try:
        grad = torch.randn(5_000_003, generator=torch.Generator().manual_seed(1))
        expected = reference_mask_gradient(grad, **KEY, drop_rate=0.4, rescale=True,
                                           offset=9)
        mask_gradient(grad, **KEY, drop_rate=0.4, rescale=True, offset=9, out=grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grad.view(torch.int32), expected.view(torch.int32))


def test_masked_values_are_kept_values_or_zero():
    grad = torch.randn(10_000) + 5.0  # no zeros of its own
    keep = keep_mask(10_000, **KEY, drop_rate=0.25)
    out = mask_gradient(grad, **KEY, drop_rate=0.25, rescale=True)
    assert torch.equal(out == 0, ~keep)
    torch.testing.assert_close(out[keep], grad[keep] / 0.75, rtol=1e-6, atol=0)


def test_rate_zero_keeps_all_and_one_drops_all():
    assert keep_mask(1000, **KEY, drop_rate=0.0).all()
    assert not keep_mask(1000, **KEY, drop_rate=1.0).any()
    grad = torch.randn(100)
    assert torch.equal(mask_gradient(grad, **KEY, drop_rate=0.0, rescale=True), grad)
    assert not mask_gradient(grad, **KEY, drop_rate=1.0).any()


@pytest.mark.parametrize("rate", [-0.01, 1.0001, float("nan"), 2])
def test_rate_outside_unit_interval_is_value_error(rate):
    with pytest.raises(ValueError, match="drop_rate"):
        keep_mask(10, **KEY, drop_rate=rate)
    with pytest.raises(ValueError, match="drop_rate"):
        mask_gradient(torch.ones(10), **KEY, drop_rate=rate)


def test_bad_span_arguments_are_value_errors():
    with pytest.raises(ValueError, match="offset"):
        reference_keep_mask(10, **KEY, drop_rate=0.5, offset=-1)
    with pytest.raises(ValueError, match="block"):
        reference_keep_mask(10, **KEY, drop_rate=0.5, block=0)


def test_row_and_tensor_blocks_share_one_draw():
    rows = keep_mask(20 * 50, **KEY, drop_rate=0.5, block=50).view(20, 50)
    assert torch.equal(rows, rows[:, :1].expand(20, 50))
    assert 0 < rows[:, 0].sum() < 20  # some rows kept, some dropped (p = 0.5, 20 rows)


@pytest.mark.parametrize("raw,expected", [
    ("module.encoder.layer.0.output.dense.weight", "encoder.layer.0.output.dense.weight"),
    ("_fsdp_wrapped_module.roberta._fsdp_wrapped_module.embeddings.word_embeddings.weight",
     "roberta.embeddings.word_embeddings.weight"),
    ("_orig_mod.module.classifier.dense.bias", "classifier.dense.bias"),
    ("roberta.encoder.layer.1._checkpoint_wrapped_module.attention.self.key.weight",
     "roberta.encoder.layer.1.attention.self.key.weight"),
    ("classifier.out_proj.weight", "classifier.out_proj.weight"),
])
def test_canonical_name_strips_wrapper_prefixes(raw, expected):
    assert canonical_name(raw) == expected


def test_keep_mask_shape_and_dtype():
    assert keep_mask(33, **KEY, drop_rate=0.5).dtype == torch.bool
    assert keep_mask(33, **KEY, drop_rate=0.5).shape == (33,)
    assert keep_mask(0, **KEY, drop_rate=0.5).shape == (0,)
