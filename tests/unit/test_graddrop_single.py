"""GradDrop on one process: a tiny XLM-R fine-tunes with masked gradients, compared with
an unmasked twin that computes the same raw gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from graddrop_dist import GradDrop, GradDropConfig
from tiny_models import fixed_batches, tiny_xlmr


def raw_gradients(model, batches):
    """Gradients of an unmasked copy of `model` on the same micro-batches, summed."""
    twin = copy.deepcopy(model)
    for param in twin.parameters():
        param.grad = None
    for batch in batches:
        twin(**batch).loss.backward()
    return {name: param.grad for name, param in twin.named_parameters()}


@pytest.mark.parametrize("method", ["graddrop", "layer-graddrop", "sparse-unfreeze",
                                    "graddrop-epoch"])
def test_masked_elements_get_exactly_zero_gradient_while_training(method):
    model = tiny_xlmr()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    graddrop = GradDrop(GradDropConfig(method=method, drop_rate=0.5, seed=5,
                                       unfreeze_epochs=3)).attach(
        model, optimizer, steps_per_epoch=2)
    for batch in fixed_batches(5):
        expected = raw_gradients(model, [batch])
        optimizer.zero_grad()
        model(**batch).loss.backward()
        for name, param in model.named_parameters():
            keep = graddrop.keep_mask(name)
            assert torch.equal(param.grad, torch.where(keep, expected[name], 0.0)), name
            if graddrop.spec(name) is not None:
                assert not keep.all()
        optimizer.step()
    assert graddrop.step == 5 and graddrop.epoch == 2


@pytest.mark.parametrize("rescale", [False, True])
def test_accumulated_micro_batches_share_one_mask(rescale):
    model = tiny_xlmr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    graddrop = GradDrop(GradDropConfig(drop_rate=0.4, rescale=rescale)).attach(model,
                                                                              optimizer)
    batches = fixed_batches(4)
    for step, micro in enumerate((batches[:2], batches[2:])):
        expected = raw_gradients(model, micro)
        optimizer.zero_grad()
        for batch in micro:
            model(**batch).loss.backward()
            assert graddrop.step == step  # micro-batches do not advance the mask
        for name, param in model.named_parameters():
            keep = graddrop.keep_mask(name)
            scale = 1 / 0.6 if rescale and graddrop.spec(name) is not None else 1.0
            want = torch.where(keep, expected[name] * scale, 0.0)
            if rescale:  # sum of scaled == scaled sum, up to rounding
                torch.testing.assert_close(param.grad, want, rtol=1e-6, atol=1e-7)
                assert torch.equal(param.grad == 0, want == 0)
            else:
                assert torch.equal(param.grad, want), name
        optimizer.step()
    assert graddrop.step == 2


def test_head_is_trained_densely_by_default():
    model = tiny_xlmr()
    GradDrop(GradDropConfig(drop_rate=0.99)).attach(model)
    batch = fixed_batches(1)[0]
    expected = raw_gradients(model, [batch])
    model(**batch).loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("classifier."):
            assert torch.equal(param.grad, expected[name])


def test_wrapper_prefixes_do_not_change_the_mask():
    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    plain = GradDrop(GradDropConfig(seed=3)).attach(tiny_xlmr())
    wrapped = GradDrop(GradDropConfig(seed=3)).attach(Wrapper(tiny_xlmr()))
    assert plain.plans.keys() == wrapped.plans.keys()
    name = "roberta.encoder.layer.1.output.dense.weight"
    assert torch.equal(plain.keep_mask(name), wrapped.keep_mask(name))


def test_detach_removes_every_hook():
    model = tiny_xlmr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    graddrop = GradDrop(GradDropConfig(drop_rate=0.9)).attach(model, optimizer)
    graddrop.detach()
    batch = fixed_batches(1)[0]
    expected = raw_gradients(model, [batch])
    model(**batch).loss.backward()
    optimizer.step()
    assert graddrop.step == 0
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, expected[name])


def test_state_dict_resumes_the_mask_stream():
    model = tiny_xlmr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    config = GradDropConfig(method="graddrop-epoch", epoch_masks="independent")
    first = GradDrop(config).attach(model, optimizer, steps_per_epoch=3)
    for _ in range(4):
        optimizer.step()
    name = "roberta.encoder.layer.0.output.dense.weight"
    state = first.state_dict()
    first.detach()
    second = GradDrop(config).attach(model, optimizer, steps_per_epoch=3)
    second.load_state_dict(state)
    assert (second.step, second.epoch) == (4, 1)
    assert torch.equal(second.keep_mask(name), first.keep_mask(name, step=4))
    with pytest.raises(ValueError, match="drop_rate"):
        GradDrop(config.replace(drop_rate=0.2)).load_state_dict(state)


def test_attach_rejects_double_attach_and_bad_targets():
    model = tiny_xlmr()
    graddrop = GradDrop().attach(model)
    with pytest.raises(RuntimeError, match="already attached"):
        graddrop.attach(model)
    with pytest.raises(TypeError, match="unsupported model type"):
        GradDrop().attach(object())


def test_reattaching_keeps_the_masks_of_a_fresh_attach():
    """attach() keeps the specs made so far where the config and the parameters are the
    same (the benchmarks detach and re-attach every other step), and drops them where
    either changed: a row's length is the draw's block."""
    config = GradDropConfig(drop_rate=0.5, seed=4, granularity="row")
    narrow, wide = torch.nn.Sequential(torch.nn.Linear(4, 6)), \
        torch.nn.Sequential(torch.nn.Linear(8, 6))
    graddrop = GradDrop(config)
    for model in (narrow, narrow, wide, narrow):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        graddrop.attach(model, optimizer)
        fresh = GradDrop(config).attach(copy.deepcopy(model))
        fresh.set_step(graddrop.step)
        mask = graddrop.keep_mask("0.weight")
        assert torch.equal(mask, fresh.keep_mask("0.weight"))
        assert mask.all(dim=1).logical_or(~mask.any(dim=1)).all()  # whole rows
        model.zero_grad(set_to_none=True)
        model(torch.ones(2, model[0].in_features)).sum().backward()
        assert torch.equal(model[0].weight.grad != 0, mask)
        optimizer.step()
        graddrop.detach()
