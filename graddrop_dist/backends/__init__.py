"""How the trainer runs a model on each backend: one class per backend, found by name.

| name | class | GradDrop adapter (graddrop_dist/adapters/) |
|---|---|---|
| single | `SingleBackend` (the module on its device) | tensor hooks |
| ddp | `DDPBackend` | DDP communication hook |
| fsdp1 | `FSDP1Backend` (a unit per encoder layer) | FSDP1 communication hook |
| fsdp2 | `FSDP2Backend` (`fully_shard` per encoder layer) | custom reduce-scatter |
| deepspeed | `DeepSpeedBackend` (ZeRO 0-3, the JSON's precision and offload) | tensor hooks |

    backend = wrap(model, "fsdp2", settings=TrainSettings(precision="bf16"), device=device)
    graddrop = backend.attach(GradDrop(config))
    loss = backend.train_step(micro_batches)
"""

from __future__ import annotations

from graddrop_dist.backends.base import Backend, NonFiniteGradient
from graddrop_dist.backends.settings import TrainSettings
from graddrop_dist.backends.registry import BACKEND_NAMES, backend_class


def wrap(model, name: str, **kwargs) -> Backend:
    """`model` wrapped for backend `name` (keywords: Backend's and that backend's own)."""
    return backend_class(name)(model, **kwargs)


__all__ = ["BACKEND_NAMES", "Backend", "NonFiniteGradient", "TrainSettings", "backend_class",
           "wrap"]
