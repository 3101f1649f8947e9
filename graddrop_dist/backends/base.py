"""The backend contract, and the way most backends fulfil it.

A backend owns what differs between one process, DDP, FSDP and DeepSpeed: wrapping the
model on its device, one optimizer step over micro-batches (accumulation without
synchronisation, autocast, loss scaling, clipping after masking, the non-finite policy),
the full parameters for export, checkpoints (and whether they load on another world
size), and the GradDrop adapter that masks its gradients before the reduction. Subclasses
override only what differs: `wrap`, `no_sync`, `make_scaler`, `grad_norm`,
`full_parameters`, the checkpoint methods.

Loss scaling commutes with the mask: the mask multiplies each element by 0 or a constant
that depends only on (seed, step, name, index), never on the value, so masking the scaled
gradient and unscaling it gives the masked unscaled gradient, and the kept positions are
the ones an fp32 run keeps. An fp16 step whose gradients overflow never reaches the
optimizer, so the GradDrop step (counted on optimizer steps) does not advance either.
"""

from __future__ import annotations

import contextlib
import gc
import math
from typing import Callable

import torch

from graddrop_dist.mask import canonical_name
from graddrop_dist.backends.checkpointing import DistributedCheckpointing
from graddrop_dist.backends.placement import move_batch
from graddrop_dist.backends.registry import BackendSpec, backend_spec
from graddrop_dist.backends.settings import TrainSettings

# An fp16 overflow with the loss scale already this low is a non-finite gradient, not an
# overflow (DeepSpeed's default min_loss_scale).
MIN_LOSS_SCALE = 1.0


class NonFiniteGradient(ValueError):
    """A NaN / Inf gradient under train.nonfinite=stop, or one DeepSpeed has applied."""


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup to the optimizer's lr, then linear decay to 0 at total_steps (the
    formula of transformers' get_linear_schedule_with_warmup)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loss(output):
    return output.loss


class Backend(DistributedCheckpointing):
    name = "abstract"  # its entry in graddrop_dist/backends/registry.py says the rest

    def __init__(self, model: torch.nn.Module, *, settings: TrainSettings | None = None,
                 device: torch.device | str | None = None, layer_classes: tuple = (),
                 make_optimizer: Callable | None = None, **options) -> None:
        self.settings = settings or TrainSettings()
        self.device = torch.device(device if device is not None else "cpu")
        # What the last train_step did: "applied", or "skipped-nonfinite" (a NaN / Inf
        # gradient under train.nonfinite=skip) or "skipped-overflow" (fp16 loss scaling).
        self.last_step = "applied"
        self.model, self.optimizer, self.scheduler = self.build(
            model, tuple(layer_classes), make_optimizer, **options)
        self.scaler = self.make_scaler() if self.settings.precision == "fp16" else None

    # ------------------------------------------------------------------ configuration
    @property
    def spec(self) -> BackendSpec:
        return backend_spec(self.name)

    @property
    def distributed(self) -> bool:
        return self.spec.distributed

    @property
    def can_reshard(self) -> bool:
        return self.spec.can_reshard

    @classmethod
    def preflight(cls, *, settings: TrainSettings, device: torch.device, world_size: int,
                  **options) -> None:
        """Checks that need no process group (a bad DeepSpeed JSON, ...): one line each."""

    # ------------------------------------------------------------------ building
    def build(self, model, layer_classes, make_optimizer, **options):
        wrapped = self.wrap(model, layer_classes, **options)
        # Frozen (requires_grad=False) parameters get no optimizer state.
        params = [p for p in wrapped.parameters() if p.requires_grad]
        optimizer = (make_optimizer or self.default_optimizer)(params)
        return wrapped, optimizer, self.default_scheduler(optimizer)

    def wrap(self, model: torch.nn.Module, layer_classes: tuple) -> torch.nn.Module:
        raise NotImplementedError

    def default_optimizer(self, params):
        # The fused kernel is the fastest AdamW on CUDA; CPU has none.
        return torch.optim.AdamW(params, lr=self.settings.lr,
                                 weight_decay=self.settings.weight_decay,
                                 fused=self.device.type == "cuda" or None)

    def default_scheduler(self, optimizer):
        if not self.settings.total_steps:
            return None
        return linear_schedule(optimizer, self.settings.warmup_steps,
                               self.settings.total_steps)

    def make_scaler(self):
        return torch.amp.GradScaler(self.device.type)

    @property
    def module(self) -> torch.nn.Module:
        """The user's model inside the wrapper."""
        return self.model

    @property
    def graddrop_optimizer(self):
        """What GradDrop counts optimizer steps on (None: the adapter counts them)."""
        return self.optimizer

    def attach(self, graddrop, *, steps_per_epoch: int | None = None,
               epochs: int | None = None):
        """GradDrop on the wrapped model (graddrop_dist.adapters.adapter_for picks where
        the mask acts)."""
        return graddrop.attach(self.model, self.graddrop_optimizer,
                               steps_per_epoch=steps_per_epoch, epochs=epochs)

    # ------------------------------------------------------------------ one step
    def to_device(self, batch: dict) -> dict:
        return move_batch(batch, self.device)

    def autocast(self):
        dtype = self.settings.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def no_sync(self):
        """Skip the gradient reduction (a micro-batch before the last one)."""
        return contextlib.nullcontext()

    def train_step(self, micro_batches, loss_fn: Callable = _loss) -> float:
        """One optimizer step over `micro_batches` (gradient accumulation); mean loss.
        `last_step` says whether the step was applied or skipped."""
        self.last_step = "applied"
        self.optimizer.zero_grad(set_to_none=True)
        count = len(micro_batches)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for index, batch in enumerate(micro_batches):
            batch = self.to_device(batch)
            sync = contextlib.nullcontext() if index == count - 1 else self.no_sync()
            with sync:
                with self.autocast():
                    loss = loss_fn(self.model(**batch))
                scaled = loss / count
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
        self._finish_step()
        return float(total) / count

    def _finish_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = self.grad_norm(self.settings.max_grad_norm or math.inf)
        if not math.isfinite(norm):
            # Every rank sees the same reduced norm, so every rank decides the same.
            self._skip_step(norm)
            return
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def _skip_step(self, norm: float) -> None:
        """The optimizer does not step, so the GradDrop mask step does not advance."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.update()  # the scale backs off
            if scale > MIN_LOSS_SCALE:
                self.last_step = "skipped-overflow"
                return
        if self.settings.nonfinite == "stop":
            raise NonFiniteGradient(f"non-finite gradient norm ({norm}); "
                                    "train.nonfinite=stop")
        self.last_step = "skipped-nonfinite"

    def grad_norm(self, max_norm: float) -> float:
        """Clip the (masked, reduced) gradients to max_norm (inf: only measure); their
        global L2 norm."""
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.grad is not None], max_norm)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor partial norm
            norm = norm.full_tensor()
        return float(norm)

    def current_lr(self) -> float:
        groups = self.optimizer.param_groups
        return float(groups[0]["lr"]) if groups else 0.0

    # ------------------------------------------------------------------ export, checkpoints
    def full_parameters(self) -> dict[str, torch.Tensor]:
        """Every parameter, unsharded, on the CPU, under canonical names (a collective:
        call it on every rank)."""
        return canonical_on_cpu(self.module.named_parameters())

    def local_weights(self) -> dict[str, torch.Tensor]:
        """This rank's storage of every trainable parameter, the tensors forward reads
        (a replica, or this rank's shard: a DTensor's local part, a flat shard's view)."""
        return {name: param.data for name, param in self.module.named_parameters()
                if param.requires_grad}

    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of `local_weights` (no collective: every rank keeps its own part)."""
        return {name: tensor.detach().to("cpu", copy=True)
                for name, tensor in self.local_weights().items()}

    def restore_weights(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Put a `snapshot_weights` copy back (to evaluate the best epoch's model)."""
        weights = self.local_weights()
        if set(weights) != set(snapshot):
            raise ValueError("restore_weights: the snapshot holds other parameters "
                             f"({len(snapshot)} vs {len(weights)})")
        with torch.no_grad():
            for name, tensor in weights.items():
                tensor.copy_(snapshot[name].to(tensor.device))

    def close(self) -> None:
        self.model = self.optimizer = self.scheduler = self.scaler = None
        gc.collect()


def canonical_on_cpu(named_tensors) -> dict[str, torch.Tensor]:
    return {canonical_name(name): tensor.detach().to("cpu", copy=True)
            for name, tensor in named_tensors}
