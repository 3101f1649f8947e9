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
        accumulation = _Accumulation(list(masked.values()))
        for name, param in masked.items():
            self._handles.extend(_mask_before_accumulation(self.source, name, param,
                                                           accumulation))


def _mask_before_accumulation(source: MaskSource, name: str, param: torch.nn.Parameter,
                              accumulation: _Accumulation):
    """The handles of a parameter's mask hooks (the docstring above says which masks)."""
    pending: list[MaskSpec | None] = [None]  # set by the tensor hook for the post hook

    def mask_post_accumulate(param: torch.Tensor) -> None:
        spec, pending[0] = pending[0], None
        if spec is None:
            return
        if param.grad.is_contiguous():
            dispatch.mask_in_place(spec, param.grad)
        else:  # a gradient laid out like a strided parameter
            param.grad.copy_(dispatch.apply_mask(spec, param.grad))

    post = param.register_post_accumulate_grad_hook(mask_post_accumulate)
    in_place = _internals.move_post_accumulate_hook_first(param, post)

    def mask_hook(grad: torch.Tensor) -> torch.Tensor:
        spec = source.spec(name)
        # Only where AccumulateGrad runs next (not torch.autograd.grad, which returns the
        # hook's tensor), and not under create_graph, where param.grad is the graph's own.
        later = (in_place and param.grad is None and not torch.is_grad_enabled()
                 and accumulation.runs(param))
        pending[0] = spec if later else None
        return grad if spec is None or later else dispatch.apply_mask(spec, grad)

    return [param.register_hook(mask_hook), post]


class _Accumulation:
    """Which of the masked parameters the running backward accumulates into `.grad`, found
    for all of them at its first hook. One probe costs 5 us in a loop but 30-40 us when
    asked between the backward's kernels, with the interpreter's caches cold: once per
    parameter per backward that was a third of the hooks' Python. DeepSpeed counts the
    parameters of a backward the same way (count_used_parameters_in_backward)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self._params = params
        self._task: int | None = None
        self._accumulated: set[int] = set()

    def runs(self, param: torch.nn.Parameter) -> bool:
        task = _internals.current_graph_task()
        if task is None:  # a torch that cannot name the backward: ask each time
            return _accumulates(param)
        if task != self._task:  # a new backward (or a reentrant checkpoint's own)
            self._accumulated = {id(p) for p in self._params if _accumulates(p)}
            self._task = task
        return id(param) in self._accumulated


def _accumulates(param: torch.Tensor) -> bool:
    """Whether this backward runs the parameter's AccumulateGrad node (autograd.grad never
    does: torch refuses to answer for a leaf there). The node is looked up now, while the
    graph holds it: one kept from before would carry the shape the parameter had then
    (under ZeRO-3, an empty partition) and make autograd reject the full gradient."""
    with torch.enable_grad():
        node = param.view_as(param).grad_fn.next_functions[0][0]
    # A torch that cannot tell (None): the copy path, always correct.
    return bool(_internals.will_engine_execute(node))
