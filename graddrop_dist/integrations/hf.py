"""GradDrop in the Hugging Face `Trainer`: one callback.

    trainer = Trainer(model=model, args=args, ...,
                      callbacks=[GradDropCallback(GradDropConfig(drop_rate=0.5))])

A callback is handed the model the Trainer holds, which is not always the one it trains:
under DDP and DeepSpeed it is the module inside the wrapper (under FSDP the wrapper
itself). So the callback asks accelerate which backend the Trainer runs on and masks
where that backend lets a mask act before the reduction:

| the Trainer runs on | the callback masks in |
|---|---|
| one process | tensor hooks |
| DDP | tensor hooks on the inner module (before DDP's reducer) |
| FSDP1, FSDP2 | the FSDP adapters (the Trainer hands the FSDP module itself) |
| DeepSpeed ZeRO 0-3 | tensor hooks on the engine's module (full `ds_shape` gradients) |

Ranks agree on the seed and config before the first step (a `seed: null` is drawn once,
on rank 0). The mask step is the Trainer's applied optimizer step, counted in
`on_optimizer_step` (a step the fp16 scaler or DeepSpeed skips does not move it), and is
saved with every Trainer checkpoint (`trainer_state.json`, under `stateful_callbacks`),
so `trainer.train(resume_from_checkpoint=...)` continues the same mask stream.
"""

from __future__ import annotations

import math
from typing import Any

import torch.distributed as dist
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from graddrop_dist.adapters import _internals
from graddrop_dist.algorithm import GradDrop
from graddrop_dist.config import GradDropConfig


class GradDropCallback(TrainerCallback, ExportableState):
    """`GradDropCallback(GradDropConfig(...))`, or keyword overrides of the defaults."""

    def __init__(self, config: GradDropConfig | dict | None = None, **overrides: Any) -> None:
        if isinstance(config, dict):  # how ExportableState.from_state passes it back
            config = GradDropConfig.from_dict(config)
        self.graddrop = GradDrop(config, **overrides)
        self.graddrop_state: dict | None = None  # restored by from_state, or on resume
        self.backend: str | None = None  # where the last train() masked: single, ddp, ...

    # ----------------------------------------------------------------- Trainer events
    def on_train_begin(self, args, state, control, model=None, optimizer=None,
                       train_dataloader=None, **kwargs):
        graddrop = self.graddrop
        graddrop.detach()  # a second train() call on the same Trainer
        steps_per_epoch = None
        if train_dataloader is not None and len(train_dataloader) > 0:
            steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        # No optimizer: the callback counts the Trainer's steps itself (on_optimizer_step).
        graddrop.attach(model, None, steps_per_epoch=steps_per_epoch,
                        epochs=math.ceil(state.num_train_epochs), wrapped_by=_wrapper())
        self.backend = graddrop.backend
        saved = _saved_state(state) if state.global_step > 0 else None
        if state.global_step > 0 and saved is None:
            raise ValueError(f"GradDropCallback: the Trainer resumed at step "
                             f"{state.global_step} from a checkpoint without GradDrop's "
                             "state (saved without this callback); start a new run, or "
                             "resume from a checkpoint this callback saved")
        if saved is not None:
            graddrop.load_state_dict(saved)
        return control

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if not getattr(optimizer, "step_was_skipped", False):
            self.graddrop.optimizer_stepped()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.graddrop.detach()
        return control

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        attached = self.graddrop.plans != {}
        return {"args": {"config": self.graddrop.requested.to_dict()},
                "attributes": {"graddrop_state": self.graddrop.state_dict() if attached
                               else self.graddrop_state}}


def _saved_state(state) -> dict | None:
    saved = (state.stateful_callbacks or {}).get(GradDropCallback.__name__)
    if isinstance(saved, list):  # one entry per GradDropCallback; the Trainer holds one
        if len(saved) != 1:
            raise ValueError("GradDropCallback: the checkpoint holds several GradDrop "
                             "states; pass one GradDropCallback to the Trainer")
        saved = saved[0]
    return (saved or {}).get("attributes", {}).get("graddrop_state")


def _wrapper() -> str | None:
    """What holds the model a callback is handed (the module docstring): "deepspeed",
    "ddp", or None when it is the model itself (one process, or FSDP's own module)."""
    from accelerate.state import DistributedType

    kind = _internals.accelerate_distributed_type()
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if kind == DistributedType.FSDP:
        return None
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    return "ddp" if distributed else None
