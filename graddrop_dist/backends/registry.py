"""Every backend the trainer runs on, by the name a job config uses (`backend.name`), with
what a config can be checked against before anything heavy loads.

Adding a backend is one module with a `Backend` subclass (graddrop_dist/backends/base.py)
and one `BackendSpec` here. Its module is imported when the backend is first built, so
validating a job config imports no torch, and naming `single` never imports DeepSpeed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from graddrop_dist.adapters import COMPACTION_UNSUPPORTED

FSDP1_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD")


@dataclass(frozen=True)
class BackendSpec:
    name: str
    target: str  # "module:Class" of its Backend subclass
    distributed: bool = True  # runs under a process group
    can_reshard: bool = True  # its checkpoints load on another world size
    options: tuple[str, ...] = ()  # the BackendConfig fields it reads
    required: tuple[str, ...] = ()  # ... of which these must be set

    @property
    def compaction_refusal(self) -> str | None:
        """Why graddrop.compact cannot work here (None: it can)."""
        return COMPACTION_UNSUPPORTED.get(self.name)

    def check_config(self, backend_config) -> None:
        """A BackendConfig field this backend does not read must keep its default; the
        ones it requires must be set."""
        for field in self.required:
            if not getattr(backend_config, field):
                raise ValueError(f"backend.{field}: required when backend.name is {self.name}")
        for field, default in backend_config.defaults().items():
            if field not in self.options and getattr(backend_config, field) != default:
                keep = "unset" if default is None else f"at {default}"
                raise ValueError(f"backend.{field}: not used by backend.name {self.name}; "
                                 f"leave it {keep}, or pick a backend that reads it")

    def options_from(self, backend_config) -> dict:
        return {field: getattr(backend_config, field) for field in self.options}

    def load(self) -> type:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


REGISTRY = {spec.name: spec for spec in (
    BackendSpec("single", "graddrop_dist.backends.single:SingleBackend", distributed=False),
    BackendSpec("ddp", "graddrop_dist.backends.ddp:DDPBackend"),
    BackendSpec("fsdp1", "graddrop_dist.backends.fsdp1:FSDP1Backend",
                options=("fsdp1_strategy",)),
    BackendSpec("fsdp2", "graddrop_dist.backends.fsdp2:FSDP2Backend"),
    # DeepSpeed's checkpoint format is tied to its world size.
    BackendSpec("deepspeed", "graddrop_dist.backends.deepspeed:DeepSpeedBackend",
                can_reshard=False, options=("ds_config",), required=("ds_config",)),
)}
BACKEND_NAMES = tuple(REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    if name not in REGISTRY:
        raise ValueError(f"backend.name: expected one of {', '.join(BACKEND_NAMES)}, "
                         f"got {name!r}")
    return REGISTRY[name]


def backend_class(name: str) -> type:
    """The Backend subclass registered under `name` (imports its module)."""
    return backend_spec(name).load()
