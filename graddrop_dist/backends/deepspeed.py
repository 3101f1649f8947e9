"""DeepSpeed ZeRO 0-3: the engine owns the optimizer step, precision, clipping and loss
scaling, all read from its JSON. Values the trainer also owns are filled in from it (one
source of truth: backends/ds_config.py); the JSON's `optimizer` and `scheduler` sections
are honoured, and without them the trainer's AdamW (DeepSpeed's CPU Adam when the
optimizer is offloaded, which ZeRO-Offload needs) and linear schedule are used.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch

from graddrop_dist.adapters import _internals
from graddrop_dist.backends.base import Backend, NonFiniteGradient, canonical_on_cpu
from graddrop_dist.backends.ds_config import deepspeed_config, offloads_optimizer
from graddrop_dist.ranks.device import deepspeed_accelerator


def check_offload_optimizer(optimizer, config: dict, source: str) -> None:
    """ZeRO-Offload steps the optimizer on the CPU, with DeepSpeed's CPU Adam unless the
    JSON says zero_force_ds_cpu_optimizer: false."""
    if not offloads_optimizer(config) or not config.get("zero_force_ds_cpu_optimizer", True):
        return
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    if not isinstance(optimizer, DeepSpeedCPUAdam):
        raise ValueError(f"{source}: zero_optimization.offload_optimizer needs DeepSpeed's CPU "
                         f"Adam, got {type(optimizer).__name__}; pass no optimizer (the "
                         "trainer builds it), or set zero_force_ds_cpu_optimizer: false")


class DeepSpeedBackend(Backend):
    name = "deepspeed"

    @classmethod
    def preflight(cls, *, settings, device, world_size, ds_config) -> None:
        deepspeed_config(ds_config, settings, world_size)
        deepspeed_accelerator(device)
        if settings.precision == "fp16" and device.type == "cpu" and not _internals.deepspeed_cpu_has_fp16():
            raise ValueError("train.precision: fp16 under DeepSpeed needs a GPU (DeepSpeed's "
                             "CPU accelerator has no fp16 on this CPU); allowed on this CPU: "
                             "fp32, bf16")

    def build(self, model, layer_classes, make_optimizer, *, ds_config):
        deepspeed_accelerator(self.device)  # before DeepSpeed picks its accelerator
        from graddrop_dist.versions import require

        require("deepspeed")
        import deepspeed

        world_size = torch.distributed.get_world_size()
        config = deepspeed_config(ds_config, self.settings, world_size)
        params = [p for p in model.parameters() if p.requires_grad]
        source = "ds_config" if isinstance(ds_config, dict) else str(ds_config)
        optimizer = None
        if "optimizer" not in config:
            optimizer = (make_optimizer or self._trainer_optimizer(config))(params)
            check_offload_optimizer(optimizer, config, source)
        elif make_optimizer is not None:
            raise ValueError(f"{source}: optimizer is set in the JSON and an optimizer was "
                             "passed too; keep one")
        schedule = None
        if "scheduler" not in config and self.settings.total_steps:
            schedule = self.default_scheduler  # DeepSpeed calls it with its optimizer
        # device_rank: the GPU this rank was given (DeepSpeed would take LOCAL_RANK).
        args = SimpleNamespace(device_rank=self.device.index) \
            if self.device.type == "cuda" else None
        engine, optimizer, _, scheduler = deepspeed.initialize(
            args=args, model=model, optimizer=optimizer, lr_scheduler=schedule, config=config,
            model_parameters=params if optimizer is None else None)
        if engine.device.type != self.device.type or (
                self.device.index is not None and engine.device != self.device):
            raise ValueError(f"train.device: DeepSpeed placed the engine on {engine.device}, "
                             f"this rank computes on {self.device}; set DS_ACCELERATOR to "
                             f"{deepspeed_accelerator(self.device)} before deepspeed is imported")
        return engine, optimizer, scheduler

    def _trainer_optimizer(self, config):
        if offloads_optimizer(config):
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return lambda params: DeepSpeedCPUAdam(params, lr=self.settings.lr,
                                                   weight_decay=self.settings.weight_decay,
                                                   adamw_mode=True)
        return self.default_optimizer

    def make_scaler(self):
        return None  # the engine scales the loss itself (the JSON's fp16 section)

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()  # the engine runs the module in bf16 / fp16 itself

    @property
    def module(self):
        return self.model.module

    @property
    def graddrop_optimizer(self):
        return None  # the adapter counts the engine's applied steps

    def train_step(self, micro_batches, loss_fn=lambda output: output.loss) -> float:
        """The engine accumulates, clips and steps at the accumulation boundary."""
        engine = self.model
        self.last_step = "applied"
        skipped_before = engine.skipped_steps
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for index, batch in enumerate(micro_batches):
            loss = loss_fn(engine(**self.to_device(batch)))
            engine.backward(loss)
            if index == len(micro_batches) - 1 and not self._engine_skips_nonfinite():
                self._stop_before_a_nonfinite_step()
            engine.step()
            total += loss.detach()
        if engine.skipped_steps != skipped_before:
            self._engine_skipped_step()
        else:
            norm = engine.get_global_grad_norm()
            if norm is not None and not math.isfinite(float(norm)):
                raise NonFiniteGradient("non-finite gradient norm under DeepSpeed; the "
                                        "engine applied the step, so the run stops")
        return float(total) / len(micro_batches)

    def _engine_skips_nonfinite(self) -> bool:
        """ZeRO 1-3, and the bf16 / fp16 optimizers, skip a step whose gradients are not
        finite; ZeRO-0 in fp32 hands them to the optimizer."""
        return self.model.zero_optimization_stage() > 0 or self.settings.precision != "fp32"

    def _stop_before_a_nonfinite_step(self) -> None:
        # ZeRO-0 has all-reduced the full gradients by now: every rank decides the same.
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(norm):
            raise NonFiniteGradient(f"non-finite gradient norm ({norm}) under DeepSpeed "
                                    "ZeRO-0 in fp32, which cannot skip a step; the run stops "
                                    "before the step is applied")

    def _engine_skipped_step(self) -> None:
        """The engine found an inf / NaN gradient and skipped the step: an fp16 overflow
        (its loss scaler backs off, and stops the run itself at min_loss_scale), or a
        non-finite gradient under the non-finite policy."""
        if self.settings.precision == "fp16":
            self.last_step = "skipped-overflow"
        elif self.settings.nonfinite == "stop":
            raise NonFiniteGradient("non-finite gradient norm under DeepSpeed; "
                                    "train.nonfinite=stop")
        else:
            self.last_step = "skipped-nonfinite"

    def full_parameters(self):
        if self.model.zero_optimization_stage() == 3:
            import deepspeed

            params = list(self.module.parameters())
            with deepspeed.zero.GatheredParameters(params):
                return canonical_on_cpu(self.module.named_parameters())
        return canonical_on_cpu(self.module.named_parameters())

    def local_weights(self):
        # ZeRO-3 keeps a parameter's shard in ds_tensor (param.data is an empty stub), except
        # a parameter small enough to persist whole on every rank (ds_persist), which
        # forward reads from param.data.
        return {name: param.data if getattr(param, "ds_persist", True) else
                param.ds_tensor.data
                for name, param in self.module.named_parameters() if param.requires_grad}

    def save_checkpoint(self, folder: Path) -> None:
        # Model, optimizer, schedule and loss scale, in DeepSpeed's own format.
        self.model.save_checkpoint(str(folder), tag="deepspeed")

    def load_checkpoint(self, folder: Path) -> None:
        load_path, _ = self.model.load_checkpoint(str(folder), tag="deepspeed")
        if load_path is None:
            raise ValueError(f"--resume: DeepSpeed found no checkpoint in {folder}")

    def close(self) -> None:
        if self.model is not None:
            self.model.destroy()
        super().close()
