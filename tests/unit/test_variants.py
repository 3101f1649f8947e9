"""Each variant's semantics (docs/METHOD.md): streams, rates by depth, nesting, freezing."""

from __future__ import annotations

import math

import pytest
import torch

from graddrop_dist import GradDrop, GradDropConfig
from graddrop_dist.mask import dispatch
from graddrop_dist.variants import is_trainable, layer_index, plan_parameter
from tiny_models import fixed_batches, tiny_xlmr

WORD = "roberta.embeddings.word_embeddings.weight"
LAYER0 = "roberta.encoder.layer.0.intermediate.dense.weight"
LAYER3 = "roberta.encoder.layer.3.intermediate.dense.weight"
HEAD = "classifier.out_proj.weight"


def attached(steps_per_epoch=None, layers=4, **config):
    model = tiny_xlmr(layers=layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    graddrop = GradDrop(GradDropConfig(**config)).attach(model, optimizer,
                                                         steps_per_epoch=steps_per_epoch)
    return model, optimizer, graddrop


def test_layer_index_of_encoder_names():
    assert layer_index("roberta.encoder.layer.11.output.dense.weight") == 11
    assert layer_index("bert.encoder.layer.0.attention.self.key.bias") == 0
    assert layer_index(WORD) is None and layer_index(HEAD) is None


def test_graddrop_draws_a_new_mask_every_optimizer_step():
    _, _, graddrop = attached(method="graddrop", drop_rate=0.5)
    masks = [graddrop.keep_mask(LAYER0, step=s) for s in range(3)]
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])
    assert torch.equal(graddrop.keep_mask(LAYER0, step=1), masks[1])


@pytest.mark.parametrize("epoch_masks", ["disjoint", "independent"])
def test_graddrop_epoch_is_constant_within_an_epoch_and_new_across(epoch_masks):
    _, _, graddrop = attached(steps_per_epoch=3, method="graddrop-epoch", drop_rate=0.5,
                              unfreeze_epochs=3, epoch_masks=epoch_masks)
    masks = [graddrop.keep_mask(LAYER0, step=s) for s in range(6)]
    assert all(torch.equal(masks[0], m) for m in masks[1:3])
    assert all(torch.equal(masks[3], m) for m in masks[4:6])
    assert not torch.equal(masks[0], masks[3])


def test_disjoint_graddrop_epoch_slices_sparse_unfreeze():
    # The authors' figure: each epoch unmasks a new set of units, disjoint from the earlier
    # ones; their running union is sparse-unfreeze's kept set.
    common = dict(steps_per_epoch=1, p_start=0.8, unfreeze_epochs=4, seed=3)
    _, _, disjoint = attached(method="graddrop-epoch", **common)
    _, _, union = attached(method="sparse-unfreeze", **common)
    seen = torch.zeros_like(disjoint.keep_mask(WORD, step=0))
    for epoch in range(5):
        kept = disjoint.keep_mask(WORD, step=epoch)
        assert not (kept & seen).any()  # disjoint from every earlier epoch
        seen |= kept
        assert torch.equal(seen, union.keep_mask(WORD, step=epoch))
        if epoch:  # each epoch adds p_start / unfreeze_epochs = 0.2 of the elements
            assert abs(kept.double().mean().item() - 0.2) < 4 * math.sqrt(0.2 * 0.8 /
                                                                          kept.numel())
    assert seen.all()
    # A band spec masks gradients and packs exactly as its keep bits say.
    spec = disjoint.spec(WORD, step=2)
    assert spec.banded and (spec.rate, spec.below) == pytest.approx((0.4, 0.6))
    grad = torch.randn(spec_numel := disjoint.plans[WORD].numel)
    bits = disjoint.keep_mask(WORD, step=2).view(-1)
    assert torch.equal(dispatch.apply_mask(spec, grad), torch.where(bits, grad, 0.0))
    assert spec_numel == bits.numel()


def test_sparse_unfreeze_kept_sets_are_nested_and_grow_to_everything():
    _, _, graddrop = attached(steps_per_epoch=2, method="sparse-unfreeze", p_start=0.8,
                              unfreeze_epochs=4)
    kept = [graddrop.keep_mask(WORD, step=2 * epoch) for epoch in range(6)]
    counts = [int(k.sum()) for k in kept]
    for earlier, later in zip(kept, kept[1:]):
        assert torch.equal(earlier & later, earlier)  # nested
    assert counts == sorted(counts) and counts[0] < counts[3] < counts[4]
    assert kept[4].all() and kept[5].all()
    assert graddrop.schedule(WORD, step=0)[1] == pytest.approx(0.8)
    assert graddrop.schedule(WORD, step=2)[1] == pytest.approx(0.6)


def test_layer_graddrop_rate_is_linear_in_depth():
    _, _, graddrop = attached(layers=4, method="layer-graddrop", p_bottom=0.8, p_top=0.2)
    assert graddrop.schedule(WORD)[1] == pytest.approx(0.8)
    assert graddrop.schedule(LAYER0)[1] == pytest.approx(0.8 - 0.6 * 1 / 4)
    assert graddrop.schedule(LAYER3)[1] == pytest.approx(0.2)
    assert graddrop.schedule(HEAD)[1] == 0.0  # the head is excluded by default
    # The measured dropped fraction follows the rate (4 binomial sigma).
    for name in (WORD, LAYER0, LAYER3):
        mask = graddrop.keep_mask(name)
        rate = graddrop.schedule(name)[1]
        dropped = 1 - mask.double().mean().item()
        assert abs(dropped - rate) <= 4 * math.sqrt(rate * (1 - rate) / mask.numel())


def test_childtuning_f_rescales_kept_gradients():
    _, _, graddrop = attached(method="childtuning-f", drop_rate=0.75)
    grad = torch.ones(64, 32)
    spec = graddrop.spec(LAYER0)
    assert (spec.rate, spec.rescale, spec.scale) == (0.75, True, 4.0)
    masked = dispatch.apply_mask(spec, grad)
    assert set(masked.unique().tolist()) == {0.0, 4.0}


def test_default_exclude_keeps_the_head_dense():
    _, _, graddrop = attached(method="graddrop", drop_rate=0.9)
    assert graddrop.keep_mask(HEAD).all()
    assert not graddrop.keep_mask(LAYER0).all()


def test_include_and_exclude_select_masked_tensors():
    _, _, graddrop = attached(method="graddrop", drop_rate=0.9, include=["*.encoder.*"],
                              exclude=["*.LayerNorm.*"])
    assert graddrop.keep_mask(WORD).all()
    assert graddrop.keep_mask("roberta.encoder.layer.0.output.LayerNorm.weight").all()
    assert not graddrop.keep_mask(LAYER0).all()


@pytest.mark.parametrize("granularity", ["row", "tensor"])
def test_row_and_tensor_granularity(granularity):
    _, _, graddrop = attached(method="graddrop", drop_rate=0.5, granularity=granularity)
    masks = [graddrop.keep_mask(LAYER0, step=s) for s in range(20)]  # [64, 32] each
    for mask in masks:
        if granularity == "row":
            assert torch.equal(mask, mask[:, :1].expand_as(mask))
        else:
            assert mask.all() or not mask.any()
    assert any(m.all() for m in masks) or granularity == "row"
    assert any(not m.any() for m in masks) or granularity == "row"


def train_one_step(model, optimizer):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.zero_grad()
    model(**fixed_batches(1)[0]).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return grads, moved


def test_head_only_trains_only_the_head():
    model = tiny_xlmr()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    GradDrop(GradDropConfig(method="head-only")).attach(model, optimizer)
    grads, moved = train_one_step(model, optimizer)
    head = {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    assert moved == head
    assert all(not grads[n].any() for n in grads if n not in head)


@pytest.mark.parametrize("config,expected", [
    # One layer per epoch (the explicit old schedule): 3 layers + embeddings need 4 epochs.
    (dict(layers_per_epoch=1), [([], False), ([2], False), ([1, 2], False),
                                ([0, 1, 2], False), ([0, 1, 2], True)]),
    # Spread (the default): everything trains from unfreeze_epochs = 2 on, 2 groups a time.
    (dict(unfreeze_epochs=2), [([], False), ([1, 2], False), ([0, 1, 2], True),
                               ([0, 1, 2], True), ([0, 1, 2], True)]),
])
def test_gradual_unfreeze_unfreezes_top_down(config, expected):
    model = tiny_xlmr(layers=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    GradDrop(GradDropConfig(method="gradual-unfreeze", **config)).attach(
        model, optimizer, steps_per_epoch=1)

    def trained_parts(moved):
        assert all(n in moved for n, _ in model.named_parameters()
                   if n.startswith("classifier."))  # the head trains from the start
        return (sorted({layer_index(n) for n in moved if layer_index(n) is not None}),
                any("embeddings" in n for n in moved))

    for epoch_parts in expected:  # one optimizer step per epoch
        _, moved = train_one_step(model, optimizer)
        assert trained_parts(moved) == epoch_parts


def test_a_schedule_without_its_last_epoch_is_one_line():
    with pytest.raises(ValueError, match="graddrop.unfreeze_epochs: gradual-unfreeze needs "
                                         "the epoch from which everything trains"):
        attached(method="gradual-unfreeze")


def test_freezing_schedule_is_a_pure_function_of_epoch():
    config = GradDropConfig(method="gradual-unfreeze", layers_per_epoch=2)
    plan = plan_parameter(config, "roberta.encoder.layer.1.output.dense.weight", (4, 4))
    # 12 layers: layer 1 is group 11, unfrozen at epoch ceil(11 / 2) = 6.
    assert [is_trainable(config, plan, e, 12) for e in (5, 6)] == [False, True]
