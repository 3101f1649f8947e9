"""What every backend adapter does: list parameters, freeze what the method freezes, mask
at the right place, and tell GradDrop when the optimizer stepped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

if TYPE_CHECKING:
    from graddrop_dist.algorithm import GradDrop


class Adapter:
    backend = "abstract"

    def __init__(self, model: torch.nn.Module, optimizer, graddrop: GradDrop) -> None:
        self.model = model
        self.optimizer = optimizer
        self.graddrop = graddrop
        self._handles: list = []
        self._requires_grad: dict[str, bool] = {}

    # Parameters under their raw names; GradDrop canonicalizes them.
    def named_parameters(self) -> Iterable[tuple[str, torch.nn.Parameter]]:
        return self.model.named_parameters()

    def named_parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, tuple(param.shape)) for name, param in self.named_parameters()]

    def install(self) -> None:
        from graddrop_dist.mask import canonical_name

        self._params = {canonical_name(n): p for n, p in self.named_parameters()}
        self._requires_grad = {n: p.requires_grad for n, p in self._params.items()}
        if self.graddrop.config.freezes:
            self.apply_trainable()
        if self.graddrop.config.masks:
            self.install_masking()
        self.install_step_counter()

    def install_masking(self) -> None:
        raise NotImplementedError

    def install_step_counter(self) -> None:
        if self.optimizer is None:
            return  # the caller drives GradDrop.optimizer_stepped() itself
        self._handles.append(self.optimizer.register_step_post_hook(
            lambda *_: self.graddrop.optimizer_stepped()))

    def apply_trainable(self) -> None:
        """Freeze / unfreeze whole parameters (head-only, gradual-unfreeze)."""
        for name, param in self._params.items():
            trainable = self._requires_grad[name] and self.graddrop.trainable(name)
            param.requires_grad_(trainable)
            if not trainable:
                param.grad = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name, param in self._params.items():
            param.requires_grad_(self._requires_grad[name])


class TensorHookAdapter(Adapter):
    """Mask each parameter's full local gradient in a tensor hook.

    A tensor hook runs before AccumulateGrad, hence before DDP's reducer and DeepSpeed's
    reduction hooks (which hang off AccumulateGrad / post-accumulate): what accumulates and
    what is reduced is already masked. The hook returns a new tensor, as the autograd docs
    require (a hook must not modify its argument).
    """

    backend = "single"

    def install_masking(self) -> None:
        for name, param in self._params.items():
            if self.graddrop.plans[name].maskable and param.requires_grad:
                self._handles.append(param.register_hook(self._hook(name)))

    def _hook(self, name: str):
        graddrop = self.graddrop

        def mask_hook(grad: torch.Tensor) -> torch.Tensor:
            return graddrop.mask_(name, grad)

        return mask_hook
