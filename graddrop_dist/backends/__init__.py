"""How the trainer runs a model on each backend: one class per backend, found by name.

| name | class (module) | where GradDrop masks (graddrop_dist/adapters/) |
|---|---|---|
| single | `SingleBackend` (single.py: the module on its device) | tensor hooks |
| ddp | `DDPBackend` (ddp.py) | DDP communication hook |
| fsdp1 | `FSDP1Backend` (fsdp1.py: a unit per encoder layer) | FSDP1 communication hook |
| fsdp2 | `FSDP2Backend` (fsdp2.py: `fully_shard` per encoder layer) | custom reduce-scatter |
| deepspeed | `DeepSpeedBackend` (deepspeed.py: ZeRO 0-3; its JSON: ds_config.py) | tensor hooks |

    backend = wrap(model, "fsdp2", settings=TrainSettings(precision="bf16"), device=device)
    graddrop = backend.attach(GradDrop(config))
    loss = backend.train_step(micro_batches)
"""

from __future__ import annotations

from graddrop_dist.backends.registry import BACKEND_NAMES, backend_class, backend_spec
from graddrop_dist.backends.settings import TrainSettings
from graddrop_dist.lazy import lazy_attributes

# The backend classes import torch: only when asked for.
__getattr__ = lazy_attributes(__name__, {"Backend": "graddrop_dist.backends.base",
                                         "NonFiniteGradient": "graddrop_dist.backends.base"})


def wrap(model, name: str, **kwargs):
    """`model` wrapped for backend `name` (keywords: Backend's and that backend's own)."""
    return backend_class(name)(model, **kwargs)


__all__ = ["BACKEND_NAMES", "Backend", "NonFiniteGradient", "TrainSettings", "backend_class",
           "backend_spec", "wrap"]
