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

from graddrop_dist.algorithm import GradDrop
from graddrop_dist.adapters import adapter_for
from graddrop_dist.adapters.base import TensorHookAdapter
from graddrop_dist.adapters.deepspeed import DeepSpeedAdapter
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
        if graddrop.requested.needs_unfreeze_epochs and graddrop.requested.unfreeze_epochs \
                is None:
            last_epoch = max(1, math.ceil(state.num_train_epochs) - 1)
            graddrop.requested = graddrop.requested.replace(unfreeze_epochs=last_epoch)
        steps_per_epoch = None
        if train_dataloader is not None and len(train_dataloader) > 0:
            steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        # No optimizer: the callback counts the Trainer's steps itself (on_optimizer_step).
        graddrop.attach(model, None, steps_per_epoch=steps_per_epoch,
                        adapter=_adapter_class(model))
        self.backend = graddrop._adapter.backend
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


def _adapter_class(model):
    """Where to mask, given what the Trainer hands a callback (the module docstring)."""
    from accelerate.state import AcceleratorState, DistributedType

    kind = AcceleratorState().distributed_type if AcceleratorState._shared_state else None
    if kind == DistributedType.DEEPSPEED:
        return DeepSpeedModuleAdapter
    if kind in (DistributedType.FSDP,):
        return None  # adapter_for(model): the Trainer hands the FSDP module itself
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 \
            and type(adapter_for(model)) is TensorHookAdapter:  # not a wrapper after all
        return DDPModuleAdapter
    return None


class DDPModuleAdapter(TensorHookAdapter):
    """The module inside the Trainer's DDP: tensor hooks run before the reducer's
    AccumulateGrad hook, so every bucket is filled with masked gradients."""

    backend = "ddp"
    distributed = True

    def install(self, source) -> None:
        if source.compact:
            raise ValueError("graddrop.compact: the Hugging Face Trainer does not hand "
                             "callbacks its DDP module, whose communication hook "
                             "compaction needs; allowed with GradDropCallback: false "
                             "(graddrop-train and accelerate's prepared DDP model allow "
                             "true)")
        super().install(source)


class DeepSpeedModuleAdapter(DeepSpeedAdapter):
    """The engine's module (what a callback is handed under DeepSpeed); its parameters
    carry `ds_shape` under ZeRO-3. Steps are counted by the callback, not the engine."""

    def named_parameters(self):
        return self.model.named_parameters()

    def process_group(self):
        from deepspeed.utils import groups

        return groups._get_data_parallel_group()

    def install_step_counter(self) -> None:
        return  # GradDropCallback.on_optimizer_step
