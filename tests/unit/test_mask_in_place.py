"""The tensor-hook adapters mask a fresh gradient in place, in `param.grad` itself, so
XLM-R-Large's 1 GB embedding gradient is not copied; a gradient that autograd hands to
two parameters, one already accumulated, one kept for a second derivative and one that
torch.autograd.grad returns are masked in a copy, and every case gives the masked
gradient exactly."""

from __future__ import annotations

import pytest
import torch

from graddrop_dist import GradDrop, GradDropConfig


class TwoInputs(torch.nn.Module):
    """`a + b`: autograd hands one gradient tensor to both parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(64, 32)
        self.a = torch.nn.Parameter(torch.randn(16, 32))
        self.b = torch.nn.Parameter(torch.randn(16, 32))

    def forward(self, tokens, weight):
        return ((self.embedding(tokens) + self.a + self.b) * weight).sum()


def _attach(model):
    config = GradDropConfig(drop_rate=0.5, seed=3, rescale=True)
    return GradDrop(config).attach(model, torch.optim.SGD(model.parameters(), lr=0.1))


def _expected(model, graddrop, tokens, weight):
    """The masked gradients, from an unmasked backward of the same model."""
    graddrop.detach()
    model.zero_grad(set_to_none=True)
    model(tokens, weight).backward()
    raw = {name: param.grad.clone() for name, param in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    graddrop.attach(model)
    return {name: torch.where(graddrop.keep_mask(name), raw[name] * 2.0, 0.0)
            for name in raw}


def _inputs():
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, 64, (16,), generator=generator),
            torch.randn(16, 32, generator=generator))


def test_a_fresh_gradient_is_masked_in_the_tensor_autograd_made():
    torch.manual_seed(0)
    model = TwoInputs()
    arrived = {}

    def note_pointer(grad):  # registered first: sees the tensor autograd made
        arrived["pointer"] = grad.data_ptr()

    model.embedding.weight.register_hook(note_pointer)
    graddrop = _attach(model)
    expected = _expected(model, graddrop, *_inputs())
    arrived.clear()
    model(*_inputs()).backward()
    grad = model.embedding.weight.grad
    assert grad.data_ptr() == arrived["pointer"]  # no second embedding-sized tensor
    torch.testing.assert_close(grad, expected["embedding.weight"], rtol=0, atol=0)


def test_one_gradient_shared_by_two_parameters_gets_each_its_own_mask():
    torch.manual_seed(0)
    model = TwoInputs()
    graddrop = _attach(model)
    expected = _expected(model, graddrop, *_inputs())
    assert not torch.equal(graddrop.keep_mask("a"), graddrop.keep_mask("b"))
    model(*_inputs()).backward()
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, expected[name]), name


@pytest.mark.parametrize("case", ["accumulated", "create_graph", "autograd.grad"])
def test_the_copy_path_still_masks_exactly(case):
    torch.manual_seed(0)
    model = TwoInputs()
    graddrop = _attach(model)
    expected = _expected(model, graddrop, *_inputs())
    if case == "accumulated":  # a second micro-batch adds to the masked first one
        model(*_inputs()).backward()
        model(*_inputs()).backward()
        expected = {name: grad * 2 for name, grad in expected.items()}
        got = {name: param.grad for name, param in model.named_parameters()}
    elif case == "create_graph":
        model(*_inputs()).backward(create_graph=True)
        got = {name: param.grad.detach() for name, param in model.named_parameters()}
    else:  # no AccumulateGrad runs: the tensor hook's result is what autograd.grad returns
        names, params = zip(*model.named_parameters())
        got = dict(zip(names, torch.autograd.grad(model(*_inputs()), params)))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=0), name


class Checkpointed(torch.nn.Module):
    """Two linear layers, the second under a reentrant checkpoint: its parameters get
    their gradients in a nested backward of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 8)
        self.second = torch.nn.Linear(8, 8)

    def forward(self, x, weight):
        from torch.utils.checkpoint import checkpoint

        hidden = self.first(x)
        return (checkpoint(self.second, hidden, use_reentrant=True) * weight).sum()


def test_which_parameters_accumulate_is_asked_again_in_a_nested_backward():
    """The probe of which parameters a backward accumulates is made once per backward:
    the checkpoint's nested one has its own answer, and the outer one keeps its own."""
    torch.manual_seed(0)
    model = Checkpointed()
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator))
    arrived = {}
    for name in ("first.weight", "second.weight"):  # registered first: autograd's tensors
        model.get_parameter(name).register_hook(
            lambda grad, name=name: arrived.__setitem__(name, grad.data_ptr()))
    graddrop = _attach(model)
    expected = _expected(model, graddrop, *inputs)
    arrived.clear()
    model(*inputs).backward()
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, expected[name]), name
    for name, pointer in arrived.items():  # both masked in place, neither copied
        assert model.get_parameter(name).grad.data_ptr() == pointer, name


def test_one_probe_answers_for_every_parameter_of_a_backward():
    """Whether a backward accumulates into `.grad` is probed once per backward: an
    autograd.grad (none accumulate: its results are masked copies, `.grad` stays empty),
    then a backward(inputs=) of a subset (those masked in place, the rest untouched), then
    a full backward each get their own answer."""
    torch.manual_seed(0)
    model = TwoInputs()
    embedding = model.embedding.weight
    arrived = {}
    embedding.register_hook(lambda grad: arrived.__setitem__("pointer", grad.data_ptr()))
    graddrop = _attach(model)
    expected = _expected(model, graddrop, *_inputs())
    got = torch.autograd.grad(model(*_inputs()), [model.a, embedding])
    assert torch.equal(got[0], expected["a"])
    assert torch.equal(got[1], expected["embedding.weight"])
    assert got[1].data_ptr() != arrived["pointer"]  # a masked copy
    assert all(param.grad is None for param in model.parameters())
    model(*_inputs()).backward(inputs=[embedding])
    assert torch.equal(embedding.grad, expected["embedding.weight"])
    assert embedding.grad.data_ptr() == arrived["pointer"]  # in place
    assert model.a.grad is None and model.b.grad is None
    model.zero_grad(set_to_none=True)
    model(*_inputs()).backward()
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, expected[name]), name
    assert embedding.grad.data_ptr() == arrived["pointer"]
