"""Every backend the trainer runs on, by the name a job config uses (`backend.name`).

Adding a backend is one module with a `Backend` subclass (graddrop_dist/backends/base.py)
and one line here. A module is imported when its backend is first asked for, so naming
`single` never imports DeepSpeed, and this file imports nothing heavy at all.
"""

from __future__ import annotations

import importlib

REGISTRY = {
    "single": "graddrop_dist.backends.single:SingleBackend",
    "ddp": "graddrop_dist.backends.ddp:DDPBackend",
    "fsdp1": "graddrop_dist.backends.fsdp1:FSDP1Backend",
    "fsdp2": "graddrop_dist.backends.fsdp2:FSDP2Backend",
    "deepspeed": "graddrop_dist.backends.deepspeed:DeepSpeedBackend",
}
BACKEND_NAMES = tuple(REGISTRY)


def backend_class(name: str):
    """The Backend subclass registered under `name`."""
    if name not in REGISTRY:
        raise ValueError(f"backend.name: expected one of {', '.join(BACKEND_NAMES)}, "
                         f"got {name!r}")
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
