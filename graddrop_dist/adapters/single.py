"""One process, and every adapter that masks in tensor hooks (DDP's fallback, DeepSpeed,
the Hugging Face Trainer's inner modules): each parameter's full local gradient is masked
before it accumulates, hence before DDP's reducer and DeepSpeed's reduction hooks."""

from __future__ import annotations

import torch

from graddrop_dist.adapters import _internals
from graddrop_dist.adapters.base import Adapter, MaskSource
from graddrop_dist.mask import dispatch
from graddrop_dist.mask.spec import MaskSpec


class TensorHookAdapter(Adapter):
    """Mask each parameter's full local gradient before it accumulates (single process;
    DDP's tensor-hook path and DeepSpeed reuse it), hence before DDP's reducer and
    DeepSpeed's reduction hooks: what accumulates and what is reduced is already masked.

    A tensor hook must not modify its argument (autograd may hand the same tensor to
    another input), so masking there costs a second full-size gradient: 1 GB for
    XLM-R-Large's embedding. When `param.grad` is still empty, the hook lets the gradient
    through and a post-accumulate hook, run before every other one, masks `param.grad` in
    place instead: AccumulateGrad either steals a gradient nothing else holds or stores a
    copy, so `param.grad` is this parameter's own and holds exactly this micro-batch.
    When a gradient is already accumulated there, the tensor hook masks a copy as before.
    """

    backend = "single"

    def install_masking(self) -> None:
        masked = {name: param for name, param in self._params.items()
                  if self.source.maskable(name) and param.requires_grad}
        backward = _Backward()
        for name, param in masked.items():
            self._handles.extend(_mask_before_accumulation(self.source, name, param,
                                                           backward))


def _mask_before_accumulation(source: MaskSource, name: str, param: torch.nn.Parameter,
                              backward: _Backward):
    """The handles of a parameter's mask hooks (the docstring above says which masks)."""
    pending: list[MaskSpec | None] = [None]  # set by the tensor hook for the post hook

    def mask_post_accumulate(param: torch.Tensor) -> None:
        spec, pending[0] = pending[0], None
        if spec is None:
            return
        if param.grad.is_contiguous():
            backward.masker(spec, param.grad)
        else:  # a gradient laid out like a strided parameter
            param.grad.copy_(dispatch.apply_mask(spec, param.grad))

    post = param.register_post_accumulate_grad_hook(mask_post_accumulate)
    in_place = _internals.move_post_accumulate_hook_first(param, post)

    def mask_hook(grad: torch.Tensor) -> torch.Tensor:
        spec = source.spec(name)
        if spec is None:
            pending[0] = None
            return grad
        # Only where AccumulateGrad runs next (not torch.autograd.grad, which returns the
        # hook's tensor), and not under create_graph, where param.grad is the graph's own.
        if in_place and param.grad is None and not torch.is_grad_enabled() \
                and backward.accumulates(param):
            pending[0] = spec
            return grad
        pending[0] = None
        return dispatch.apply_mask(spec, grad)

    return [param.register_hook(mask_hook), post]


class _Backward:
    """What the hooks of one backward share, found at the first hook that asks: whether
    this backward accumulates into `.grad`, and how a gradient is masked in place.

    A backward() accumulates into every parameter whose hook runs (with `inputs=`, the
    hooks of the others do not run); torch.autograd.grad accumulates into none. So one
    probe of the first parameter answers for all: probing each, between the backward's
    kernels, cost 15-30 us a parameter. A reentrant checkpoint's nested backward is a
    backward of its own and gets its own answer. The masker is taken once per backward
    too (dispatch.in_place_masker)."""

    def __init__(self) -> None:
        self._task: int | None = None
        self._accumulates = False
        self.masker = dispatch.mask_in_place

    def accumulates(self, param: torch.nn.Parameter) -> bool:
        task = _internals.current_graph_task()
        if task is None:  # a torch that cannot name the backward: ask each time
            return _accumulates(param)
        if task != self._task:  # a new backward (or a reentrant checkpoint's own)
            self._accumulates = _accumulates(param)
            self.masker = dispatch.in_place_masker()
            self._task = task
        return self._accumulates


def _accumulates(param: torch.Tensor) -> bool:
    """Whether this backward runs the parameter's AccumulateGrad node (autograd.grad never
    does: torch refuses to answer for a leaf there). The node is looked up now, while the
    graph holds it: one kept from before would carry the shape the parameter had then
    (under ZeRO-3, an empty partition) and make autograd reject the full gradient."""
    with torch.enable_grad():
        node = param.view_as(param).grad_fn.next_functions[0][0]
    # A torch that cannot tell (None): the copy path, always correct.
    return bool(_internals.will_engine_execute(node))
