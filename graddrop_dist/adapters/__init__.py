"""Where the mask acts: one adapter per backend, chosen in one place, `adapter_for`, which
`GradDrop.attach`, the trainer's backends (graddrop_dist/backends/) and the Hugging Face
callback all call.

| what GradDrop is attached to | adapter (module) | where the mask is applied, before the reduction |
|---|---|---|
| a module (one process) | `TensorHookAdapter` (single.py) | tensor hooks on each parameter |
| `DistributedDataParallel` | `DDPAdapter` (ddp.py) | DDP communication hook, bucket by bucket |
| the module inside DDP | `DDPModuleAdapter` (ddp.py) | tensor hooks, before DDP's reducer |
| FSDP1 | `FSDP1Adapter` (fsdp1.py) | communication hook on each unit's flat gradient |
| FSDP2 (`fully_shard`) | `FSDP2Adapter` (fsdp2.py) | custom reduce-scatter of each group's buffer |
| a DeepSpeed engine (ZeRO 0-3) | `DeepSpeedAdapter` (deepspeed.py) | tensor hooks, full `ds_shape` gradient |
| the module inside an engine | `DeepSpeedModuleAdapter` (deepspeed.py) | the same, steps counted by the caller |

Importing this package imports no torch; `adapter_for` does.
"""

from __future__ import annotations

import sys

# What an adapter cannot do, said in one line by config validation before anything loads
# (graddrop_dist/backends/registry.py) and by the adapter itself at attach.
COMPACTION_UNSUPPORTED = {
    "deepspeed": ("graddrop.compact: DeepSpeed has no hook for its gradient collective, so it "
                  "always reduces densely (docs/backends.md, \"Communication compaction\"); "
                  "allowed with backend deepspeed: false (compaction works with ddp, fsdp1, "
                  "fsdp2)"),
}
WRAPPED_BY = ("ddp", "deepspeed")


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


def adapter_for(model, optimizer=None, *, wrapped_by: str | None = None):
    """The adapter for what `model` is: a DeepSpeed engine, DDP, FSDP1, FSDP2 or a module.

    wrapped_by: "ddp" or "deepspeed" when `model` is the module inside such a wrapper that
    the caller cannot hand over (a Hugging Face Trainer callback is handed those)."""
    import torch
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    optimizer = unwrap_optimizer(optimizer)
    if wrapped_by not in (None, *WRAPPED_BY):
        raise ValueError(f"wrapped_by: expected one of {', '.join(WRAPPED_BY)} or None, got "
                         f"{wrapped_by!r}")
    if wrapped_by == "deepspeed":
        from graddrop_dist.adapters.deepspeed import DeepSpeedModuleAdapter

        return DeepSpeedModuleAdapter(model, None)
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
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"GradDrop.attach: unsupported model type {type(model).__name__}; "
                        "expected a torch.nn.Module, a DDP / FSDP1 / FSDP2 module or a "
                        "DeepSpeed engine")
    modules = list(model.modules())
    if any(isinstance(m, FSDPModule) for m in modules):
        from graddrop_dist.adapters.fsdp2 import FSDP2Adapter

        return FSDP2Adapter(model, optimizer)
    if any(isinstance(m, (FullyShardedDataParallel, DistributedDataParallel))
           for m in modules):
        raise TypeError("GradDrop.attach: pass the outermost DDP / FSDP1 wrapper, not a "
                        "module that contains one")
    if wrapped_by == "ddp":
        from graddrop_dist.adapters.ddp import DDPModuleAdapter

        return DDPModuleAdapter(model, optimizer)
    from graddrop_dist.adapters.single import TensorHookAdapter

    return TensorHookAdapter(model, optimizer)


__all__ = ["COMPACTION_UNSUPPORTED", "WRAPPED_BY", "adapter_for", "unwrap_optimizer"]
