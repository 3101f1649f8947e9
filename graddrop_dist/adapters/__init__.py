"""One adapter per backend; `adapter_for` picks it from the object handed to attach().

| backend | where the mask is applied (before the reduction) |
|---|---|
| single process | tensor hook on each parameter |
| DDP | tensor hook (before the reducer's AccumulateGrad hook) |
| FSDP1 | communication hook on each unit's full flat gradient |
| FSDP2 | custom reduce-scatter on each group's flat buffer |
| DeepSpeed ZeRO 0-3 | tensor hook (full gradient, before the engine's reduction) |
"""

from __future__ import annotations

import sys

import torch

from graddrop_dist.adapters.base import Adapter, TensorHookAdapter


def _is_deepspeed_engine(model) -> bool:
    if "deepspeed" not in sys.modules:
        return False
    from deepspeed import DeepSpeedEngine

    return isinstance(model, DeepSpeedEngine)


def unwrap_optimizer(optimizer):
    """The optimizer that really steps: accelerate's `AcceleratedOptimizer` (and its
    DeepSpeed wrapper) keep it in `.optimizer` and are torch optimizers only by type (no
    hook registries), so step hooks go on what they wrap. A wrapper steps the inner one
    only on a synchronising micro-batch and not when the fp16 scaler skips the step, so a
    hook there counts exactly the applied optimizer steps."""
    if "accelerate" in sys.modules:
        from accelerate.optimizer import AcceleratedOptimizer

        while isinstance(optimizer, AcceleratedOptimizer):
            optimizer = optimizer.optimizer
    return optimizer


def adapter_for(model, optimizer=None) -> Adapter:
    """The adapter for what `model` is (a DeepSpeed engine, DDP, FSDP1, FSDP2, a module)."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    optimizer = unwrap_optimizer(optimizer)

    if _is_deepspeed_engine(model):
        from graddrop_dist.adapters.deepspeed import DeepSpeedAdapter

        if optimizer is not None and optimizer is not model.optimizer:
            raise ValueError("GradDrop.attach(engine): pass no optimizer; the engine's "
                             "own optimizer steps are counted")
        return DeepSpeedAdapter(model, None)
    if isinstance(model, DistributedDataParallel):
        from graddrop_dist.adapters.ddp import DDPAdapter

        return DDPAdapter(model, optimizer)
    if isinstance(model, FullyShardedDataParallel):
        from graddrop_dist.adapters.fsdp1 import FSDP1Adapter

        return FSDP1Adapter(model, optimizer)
    if isinstance(model, torch.nn.Module):
        modules = list(model.modules())
        if any(isinstance(m, FSDPModule) for m in modules):
            from graddrop_dist.adapters.fsdp2 import FSDP2Adapter

            return FSDP2Adapter(model, optimizer)
        if any(isinstance(m, (FullyShardedDataParallel, DistributedDataParallel))
               for m in modules):
            raise TypeError("GradDrop.attach: pass the outermost DDP / FSDP1 wrapper, "
                            "not a module that contains one")
        return TensorHookAdapter(model, optimizer)
    raise TypeError(f"GradDrop.attach: unsupported model type {type(model).__name__}; "
                    "expected a torch.nn.Module, a DDP / FSDP1 / FSDP2 module or a "
                    "DeepSpeed engine")
