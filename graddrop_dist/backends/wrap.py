"""Wrap a model for a backend and drive it the same way everywhere.

`TrainingSetup` hides what differs between backends in one training step: where the
optimizer lives, how a micro-batch skips the reduction during gradient accumulation,
and how the full (consolidated) parameters are read back. Tests, benchmarks and the
trainer all use it, so every backend is exercised through one code path.
"""

from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass
from typing import Callable

import torch

from graddrop_dist.mask import canonical_name

BACKENDS = ("single", "ddp", "fsdp1", "fsdp2", "deepspeed")


class NonFiniteGradient(ValueError):
    """A NaN / Inf gradient under train.nonfinite=stop (or under DeepSpeed)."""
FSDP1_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD")


@dataclass
class TrainingSetup:
    backend: str
    model: torch.nn.Module  # the wrapper (DDP / FSDP / engine), or the module itself
    optimizer: object
    accumulation: int = 1
    scheduler: object = None  # stepped here, or by the DeepSpeed engine
    max_grad_norm: float = 0.0  # clipping after masking (DeepSpeed: its own config)
    autocast_dtype: torch.dtype | None = None
    nonfinite: str = "skip"  # a NaN/Inf gradient: "skip" the step, or "stop" the run
    skipped_steps: int = 0

    @property
    def is_deepspeed(self) -> bool:
        return self.backend == "deepspeed"

    @property
    def module(self) -> torch.nn.Module:
        """The user's model inside the wrapper."""
        if self.backend in ("ddp", "deepspeed"):
            return self.model.module
        return self.model

    def graddrop_optimizer(self):
        """What GradDrop.attach takes as optimizer (the engine counts its own steps)."""
        return None if self.is_deepspeed else self.optimizer

    def train_step(self, micro_batches, loss_fn: Callable = lambda out: out.loss) -> float:
        """One optimizer step over `micro_batches` (gradient accumulation); mean loss."""
        total = 0.0
        if self.is_deepspeed:
            for batch in micro_batches:
                loss = loss_fn(self.model(**batch))
                self.model.backward(loss)
                self.model.step()
                total += float(loss.detach())
            norm = self.model.get_global_grad_norm()
            if norm is not None and not math.isfinite(float(norm)):
                # The engine has already stepped (fp32 / bf16 have no skip): stop.
                raise NonFiniteGradient("non-finite gradient norm under DeepSpeed; the "
                                        "engine applied the step, so the run stops")
            return total / len(micro_batches)
        self.optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(micro_batches):
            with self.no_sync(last=index == len(micro_batches) - 1):
                with self.autocast():
                    loss = loss_fn(self.model(**batch))
                (loss / len(micro_batches)).backward()
            total += float(loss.detach())
        norm = self.clip_gradients() if self.max_grad_norm > 0 else self.gradient_norm()
        if not math.isfinite(norm):
            # Every rank sees the same reduced norm, so every rank decides the same. The
            # optimizer does not step, so the GradDrop mask step does not advance either.
            if self.nonfinite == "stop":
                raise NonFiniteGradient(f"non-finite gradient norm ({norm}); "
                                        "train.nonfinite=stop")
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            return total / len(micro_batches)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return total / len(micro_batches)

    def gradient_norm(self) -> float:
        """The global L2 norm of the (masked, reduced) gradients, without clipping."""
        if self.backend == "fsdp1":
            return float(self.model.clip_grad_norm_(float("inf")))
        return self._norm(float("inf"))

    def _norm(self, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.grad is not None], max_norm)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor partial norm
            norm = norm.full_tensor()
        return float(norm)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu" if not torch.cuda.is_available() else "cuda",
                              dtype=self.autocast_dtype)

    def clip_gradients(self) -> float:
        """Clip the (already masked) gradients to max_grad_norm; return their norm."""
        if self.backend == "fsdp1":
            return float(self.model.clip_grad_norm_(self.max_grad_norm))
        return self._norm(self.max_grad_norm)

    def current_lr(self) -> float:
        groups = self.optimizer.param_groups
        return float(groups[0]["lr"]) if groups else 0.0

    def no_sync(self, last: bool):
        """Skip the gradient reduction on all but the last micro-batch, where supported."""
        if last or self.backend == "single":
            return contextlib.nullcontext()
        if self.backend in ("ddp", "fsdp1"):
            return self.model.no_sync()
        if self.backend == "fsdp2":
            return _fsdp2_no_sync(self.model)
        return contextlib.nullcontext()

    def full_parameters(self) -> dict[str, torch.Tensor]:
        """Every parameter, unsharded, under canonical names (a collective: all ranks)."""
        if self.backend.startswith("fsdp"):
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_model_state_dict)

            state = get_model_state_dict(self.model,
                                         options=StateDictOptions(full_state_dict=True))
            return _canonical(state.items())
        if self.is_deepspeed and getattr(self.model, "zero_optimization_stage", lambda: 0)() == 3:
            import deepspeed

            params = list(self.module.parameters())
            with deepspeed.zero.GatheredParameters(params):
                return _canonical(self.module.named_parameters())
        return _canonical(self.module.named_parameters())

    def close(self) -> None:
        if self.is_deepspeed:
            self.model.destroy()
        self.model = self.optimizer = None
        gc.collect()


def _canonical(named_tensors) -> dict[str, torch.Tensor]:
    return {canonical_name(n): t.detach().clone() for n, t in named_tensors}


@contextlib.contextmanager
def _fsdp2_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def wrap(model: torch.nn.Module, backend: str, *, make_optimizer: Callable,
         make_scheduler: Callable | None = None, max_grad_norm: float = 0.0,
         nonfinite: str = "skip",
         autocast_dtype: torch.dtype | None = None,
         layer_classes: tuple[type, ...] = (), accumulation: int = 1,
         fsdp1_strategy: str = "FULL_SHARD", fsdp1_use_orig_params: bool = True,
         ds_config: dict | None = None,
         device: torch.device | None = None) -> TrainingSetup:
    """Wrap `model` for `backend`. `layer_classes` become their own FSDP units / shards;
    `ds_config` is a filled DeepSpeed config (graddrop_dist.ds_config)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    device = device or torch.device("cpu")

    def finish(wrapped) -> TrainingSetup:
        # Frozen (requires_grad=False) parameters get no optimizer state.
        optimizer = make_optimizer([p for p in wrapped.parameters() if p.requires_grad])
        scheduler = make_scheduler(optimizer) if make_scheduler else None
        return TrainingSetup(backend, wrapped, optimizer, accumulation, scheduler,
                             max_grad_norm, autocast_dtype, nonfinite)

    if backend == "single":
        return finish(model.to(device))
    if backend == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return finish(DistributedDataParallel(model.to(device), device_ids=ids))
    if backend == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        if fsdp1_strategy not in FSDP1_STRATEGIES:
            raise ValueError(f"fsdp1_strategy: expected one of {', '.join(FSDP1_STRATEGIES)}, "
                             f"got {fsdp1_strategy!r}")
        return finish(FullyShardedDataParallel(
            model, sharding_strategy=ShardingStrategy[fsdp1_strategy], device_id=device,
            auto_wrap_policy=ModuleWrapPolicy(set(layer_classes)) if layer_classes else None,
            use_orig_params=fsdp1_use_orig_params))
    if backend == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        model.to(device)
        for module in list(model.modules()):
            if layer_classes and isinstance(module, layer_classes):
                fully_shard(module)
        return finish(fully_shard(model))
    import deepspeed

    if ds_config is None:
        raise ValueError("backend deepspeed needs ds_config")
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=make_optimizer([p for p in model.parameters()
                                               if p.requires_grad]),
        lr_scheduler=make_scheduler, config=ds_config)
    return TrainingSetup(backend, engine, optimizer, accumulation, scheduler)
