"""What every backend adapter does: list the parameters under their full (unsharded)
shapes, apply the mask at the right place, and tell GradDrop when the optimizer stepped.

An adapter sees GradDrop only through `MaskSource`: the spec of a parameter's mask at the
current step, whether a parameter is ever masked, whether to compact the collective, and
the callback for an optimizer step.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Protocol

import torch

from graddrop_dist.mask import canonical_name, dispatch
from graddrop_dist.mask.spec import MaskSpec


class MaskSource(Protocol):
    compact: bool

    def maskable(self, name: str) -> bool: ...

    def spec(self, name: str) -> MaskSpec | None: ...

    def optimizer_stepped(self) -> None: ...


class Adapter:
    backend = "abstract"
    distributed = False

    def __init__(self, model, optimizer=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.source: MaskSource | None = None
        self._handles: list = []

    def named_parameters(self) -> Iterable[tuple[str, torch.nn.Parameter]]:
        """Parameters under their raw names (GradDrop canonicalizes them)."""
        return self.model.named_parameters()

    def full_shape(self, param: torch.nn.Parameter) -> tuple[int, ...]:
        """The unsharded shape: what the mask's global element index runs over."""
        return tuple(param.shape)

    def named_parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, self.full_shape(param)) for name, param in self.named_parameters()]

    def process_group(self):
        return None  # the default group, when distributed

    def install(self, source: MaskSource) -> None:
        self.source = source
        self._params = {canonical_name(n): p for n, p in self.named_parameters()}
        if any(source.maskable(name) for name in self._params):
            self.install_masking()
        self.install_step_counter()

    def install_masking(self) -> None:
        raise NotImplementedError

    def install_step_counter(self) -> None:
        if self.optimizer is None:
            return  # the caller drives GradDrop.optimizer_stepped() itself
        source = self.source
        self._handles.append(self.optimizer.register_step_post_hook(
            lambda *_: source.optimizer_stepped()))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


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
        for name, param in self._params.items():
            if self.source.maskable(name) and param.requires_grad:
                self._handles.extend(_mask_before_accumulation(self.source, name, param))


def _mask_before_accumulation(source: MaskSource, name: str, param: torch.nn.Parameter):
    """The handles of a parameter's mask hooks (the docstring above says which masks)."""
    pending: list[MaskSpec | None] = [None]  # set by the tensor hook for the post hook

    def mask_post_accumulate(param: torch.Tensor) -> None:
        spec, pending[0] = pending[0], None
        if spec is None:
            return
        if param.grad.is_contiguous():
            dispatch.apply_mask(spec, param.grad, out=param.grad)
        else:  # a gradient laid out like a strided parameter
            param.grad.copy_(dispatch.apply_mask(spec, param.grad))

    post = param.register_post_accumulate_grad_hook(mask_post_accumulate)
    in_place = _run_first(param, post)

    def mask_hook(grad: torch.Tensor) -> torch.Tensor:
        spec = source.spec(name)
        # Only where AccumulateGrad runs next (not torch.autograd.grad, which returns the
        # hook's tensor), and not under create_graph, where param.grad is the graph's own.
        later = (in_place and param.grad is None and not torch.is_grad_enabled()
                 and _accumulates(param))
        pending[0] = spec if later else None
        return grad if spec is None or later else dispatch.apply_mask(spec, grad)

    return [param.register_hook(mask_hook), post]


def _accumulates(param: torch.Tensor) -> bool:
    """Whether this backward runs the parameter's AccumulateGrad node (autograd.grad never
    does: torch refuses to answer for a leaf there). The node is looked up now, while the
    graph holds it: one kept from before would carry the shape the parameter had then
    (under ZeRO-3, an empty partition) and make autograd reject the full gradient."""
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if will_execute is None:  # a torch without it: the copy path, always correct
        return False
    with torch.enable_grad():
        node = param.view_as(param).grad_fn.next_functions[0][0]
    try:
        return will_execute(node)
    except RuntimeError:
        return False


def _run_first(param: torch.Tensor, handle) -> bool:
    """Move a post-accumulate hook before those registered earlier (DeepSpeed's reduction
    hooks); False where this torch keeps them otherwise than in an OrderedDict."""
    hooks = getattr(param, "_post_accumulate_grad_hooks", None)
    if not isinstance(hooks, OrderedDict) or handle.id not in hooks:
        return False
    hooks.move_to_end(handle.id, last=False)
    return True
