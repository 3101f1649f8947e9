"""Variants and baselines as pure schedules: which parameters train, and with which mask.

Everything here is a function of (config, parameter, step, epoch): no state, no rank, so
a resumed run or another rank derives the same answer from the same step and epoch.

Layer positions for BERT / RoBERTa / XLM-R encoders: the embeddings are position 0, layer
`encoder.layer.N.` is position N + 1, everything else (pooler, task head) sits on top.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from graddrop_dist.config import GradDropConfig

_LAYER = re.compile(r"(?:^|\.)(?:encoder\.layer|layers)\.(\d+)\.")
_EMBEDDINGS = re.compile(r"(?:^|\.)embeddings\.")


def layer_index(name: str) -> int | None:
    """N for a parameter of encoder layer N, else None."""
    found = _LAYER.search(name)
    return int(found.group(1)) if found else None


def is_embedding(name: str) -> bool:
    return _EMBEDDINGS.search(name) is not None


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True)
class ParamPlan:
    """What GradDrop knows about one parameter, under its canonical name."""

    name: str
    shape: tuple[int, ...]
    numel: int
    layer: int | None
    embedding: bool
    head: bool
    maskable: bool  # include matches, exclude does not

    def block(self, granularity: str) -> int:
        """Elements that share one draw: 1, one row (first dimension), or the tensor."""
        if granularity == "element" or self.numel == 0:
            return 1
        if granularity == "tensor":
            return self.numel
        return self.numel // self.shape[0] if len(self.shape) >= 2 else 1


def plan_parameter(config: GradDropConfig, name: str, shape: tuple[int, ...]) -> ParamPlan:
    numel = 1
    for size in shape:
        numel *= size
    return ParamPlan(name=name, shape=tuple(shape), numel=numel, layer=layer_index(name),
                     embedding=is_embedding(name), head=matches(name, config.head),
                     maskable=matches(name, config.include) and
                     not matches(name, config.exclude))


def num_layers(plans) -> int:
    layers = [plan.layer for plan in plans if plan.layer is not None]
    return max(layers) + 1 if layers else 0


def unfreeze_group(plan: ParamPlan, layers: int) -> int:
    """gradual-unfreeze order, top down: 0 = head and other top-level parameters,
    k = encoder layer (layers - k), layers + 1 = embeddings."""
    if plan.embedding:
        return layers + 1
    if plan.layer is not None:
        return layers - plan.layer
    return 0


def may_be_masked(config: GradDropConfig, plan: ParamPlan) -> bool:
    """Whether the method ever touches this parameter's gradient (where to put hooks)."""
    if config.freezes:
        return not plan.head
    return config.masks and plan.maskable


def groups_per_epoch(config: GradDropConfig, layers: int) -> int:
    """gradual-unfreeze: layer groups unfrozen per epoch; spread (layers_per_epoch null) so
    that the embeddings, the last of layers + 1 groups, unfreeze at `unfreeze_epochs`."""
    if config.layers_per_epoch is not None:
        return config.layers_per_epoch
    return math.ceil((layers + 1) / config.unfreeze_epochs)


def is_trainable(config: GradDropConfig, plan: ParamPlan, epoch: int, layers: int) -> bool:
    """Whether a parameter receives a (non-zero) gradient (the freezing baselines)."""
    if config.method == "head-only":
        return plan.head
    if config.method == "gradual-unfreeze":
        return plan.head or \
            unfreeze_group(plan, layers) <= epoch * groups_per_epoch(config, layers)
    return True


def depth_fraction(plan: ParamPlan, layers: int) -> float:
    """0 for the embeddings, (N + 1) / layers for encoder layer N, 1 above the encoder."""
    if plan.embedding:
        return 0.0
    if plan.layer is not None and layers > 0:
        return (plan.layer + 1) / layers
    return 1.0


class Draw(NamedTuple):
    """Which draws a mask keeps: element i is kept when rate <= U(stream, i) < below."""

    stream: int
    rate: float
    below: float = 1.0


def unfreeze_rate(config: GradDropConfig, epoch: int) -> float:
    """sparse-unfreeze's drop rate at `epoch`: p_start, falling linearly to 0 at
    unfreeze_epochs. Epoch -1 (before training) is 1: nothing kept."""
    if epoch < 0:
        return 1.0
    return config.p_start * max(0.0, 1.0 - epoch / config.unfreeze_epochs)


def mask_schedule(config: GradDropConfig, plan: ParamPlan, step: int, epoch: int,
                  layers: int) -> Draw:
    """The draws of this parameter's mask at optimizer step `step`, epoch `epoch`.

    A rate of 0 (below 1) means "not masked" (full, excluded parameters, a schedule at 0).
    Frozen parameters of head-only / gradual-unfreeze get rate 1: their gradient is zeroed,
    which every backend can do at the same place as the mask, with no change to
    requires_grad (DDP buckets, FSDP flat parameters and ZeRO partitions are fixed when
    they are built).
    """
    if config.freezes:
        return Draw(0, 0.0 if is_trainable(config, plan, epoch, layers) else 1.0)
    if not config.masks or not plan.maskable:
        return Draw(0, 0.0)
    method = config.method
    if method in ("graddrop", "childtuning-f"):
        return Draw(step, config.drop_rate)
    if method == "graddrop-epoch" and config.epoch_masks == "independent":
        return Draw(epoch, config.drop_rate)
    if method == "graddrop-epoch":
        # One draw per element for the whole run; each epoch keeps the slice sparse-unfreeze
        # adds that epoch, so the epochs' kept sets are disjoint.
        return Draw(0, unfreeze_rate(config, epoch), unfreeze_rate(config, epoch - 1))
    if method == "sparse-unfreeze":
        # One draw per element for the whole run (stream 0): as p falls, the kept sets
        # are nested and grow until everything trains at `unfreeze_epochs`.
        return Draw(0, unfreeze_rate(config, epoch))
    if method == "layer-graddrop":
        fraction = depth_fraction(plan, layers)
        return Draw(step, config.p_bottom + (config.p_top - config.p_bottom) * fraction)
    raise AssertionError(f"unhandled method {method}")
