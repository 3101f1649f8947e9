"""What every adapter does: list the parameters under their full (unsharded) shapes, apply
the mask at the right place, and tell GradDrop when the optimizer stepped.

An adapter sees GradDrop only through `MaskSource`: the spec of a parameter's mask at the
current step, whether a parameter is ever masked, whether to compact the collective,
whether kept values are rescaled, and the callback for an optimizer step.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import torch

from graddrop_dist.mask import canonical_name
from graddrop_dist.mask.spec import MaskSpec


class MaskSource(Protocol):
    compact: bool
    rescales: bool

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
