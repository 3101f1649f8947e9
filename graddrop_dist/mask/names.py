"""One key per parameter, whatever wraps the model.

DDP, FSDP1, torch.compile, activation checkpointing and DeepSpeed insert prefixes into
`named_parameters()`. The mask is keyed by name, so every backend must strip them the same
way or two ranks (or a rank and the single-process reference) would draw different masks.
"""

from __future__ import annotations

WRAPPER_PREFIXES = ("module.", "_fsdp_wrapped_module.", "_orig_mod.",
                    "_checkpoint_wrapped_module.")


def canonical_name(name: str) -> str:
    """Remove wrapper segments anywhere in a dotted parameter name.

    >>> canonical_name("module._fsdp_wrapped_module.encoder.layer.0._orig_mod.weight")
    'encoder.layer.0.weight'
    """
    parts = [part for part in name.split(".") if f"{part}." not in WRAPPER_PREFIXES]
    return ".".join(parts)
