"""One adapter per backend; `adapter_for` picks it from the object handed to attach()."""

from __future__ import annotations

import torch

from graddrop_dist.backends.base import Adapter, TensorHookAdapter


def adapter_for(model, optimizer, graddrop) -> Adapter:
    if isinstance(model, torch.nn.Module):
        return TensorHookAdapter(model, optimizer, graddrop)
    raise TypeError(f"GradDrop.attach: unsupported model type {type(model).__name__}; "
                    "expected a torch.nn.Module")
