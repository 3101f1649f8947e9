"""GradDrop: the algorithm object. It decides *which* mask a gradient gets; a backend
adapter (graddrop_dist/backends/) decides *where* in the backward pass it is applied.

The mask step is the optimizer step, never the micro-batch: every micro-batch of one
accumulated step sees the same mask, so masking before or after a reduction, or before
or after accumulation, is the same operation.
"""

from __future__ import annotations

import secrets
from typing import Any

import torch

from graddrop_dist.dist.agreement import agree_at_attach, verify_masks
from graddrop_dist.config import GradDropConfig
from graddrop_dist.mask import canonical_name, keep_mask, mask_gradient
from graddrop_dist.variants import (ParamPlan, is_trainable, mask_schedule, may_be_masked,
                                    num_layers, plan_parameter)


class GradDrop:
    """`GradDrop(config).attach(model, optimizer)`; `detach()` undoes everything.

    steps_per_epoch: when given, the epoch is derived from the optimizer step, so the whole
    state is one integer; otherwise call `set_epoch` at each epoch boundary.
    """

    def __init__(self, config: GradDropConfig | None = None, **overrides: Any) -> None:
        config = config or GradDropConfig()
        self.requested = config.replace(**overrides) if overrides else config
        self.config = self.requested  # seed resolved at attach when requested.seed is None
        self.plans: dict[str, ParamPlan] = {}
        self.layers = 0
        self.steps_per_epoch: int | None = None
        self._step = 0
        self._epoch = 0
        self._adapter = None

    # ----------------------------------------------------------------- attach / detach
    def attach(self, model, optimizer=None, *, steps_per_epoch: int | None = None,
               adapter=None) -> GradDrop:
        """adapter: the adapter class to use (a trainer backend names its own); by default
        it is chosen from what `model` is (graddrop_dist.backends.adapter_for)."""
        from graddrop_dist.backends import adapter_for

        if self._adapter is not None:
            raise RuntimeError("GradDrop is already attached; call detach() first")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        adapter = (adapter or adapter_for)(model, optimizer, self)
        self.plans = self._plan(adapter.named_parameter_shapes())
        self.layers = num_layers(self.plans.values())
        self.config = self.requested
        if adapter.distributed:
            # Before any hook exists: a disagreement raises on every rank, no hang.
            self.config = self.config.replace(seed=agree_at_attach(self, adapter))
        elif self.config.seed is None:
            self.config = self.config.replace(seed=secrets.randbelow(2**63))
        adapter.install()
        self._adapter = adapter
        return self

    def detach(self) -> None:
        if self._adapter is not None:
            self._adapter.remove()
            self._adapter = None

    def _plan(self, named_shapes) -> dict[str, ParamPlan]:
        plans: dict[str, ParamPlan] = {}
        for raw_name, shape in named_shapes:
            name = canonical_name(raw_name)
            if name in plans:
                raise ValueError(f"two parameters share the canonical name {name!r} "
                                 f"(one is {raw_name!r}); masks are keyed by name")
            plans[name] = plan_parameter(self.config, name, tuple(shape))
        return plans

    # ----------------------------------------------------------------- step and epoch
    @property
    def step(self) -> int:
        return self._step

    @property
    def epoch(self) -> int:
        if self.steps_per_epoch is not None:
            return self._step // self.steps_per_epoch
        return self._epoch

    def set_step(self, step: int) -> None:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self._step = int(step)

    def set_epoch(self, epoch: int) -> None:
        if self.steps_per_epoch is not None:
            raise RuntimeError("the epoch is derived from the step (steps_per_epoch was "
                               "given at attach); use set_step")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)

    def optimizer_stepped(self) -> None:
        """Called by the adapter after every optimizer step: the next mask is new."""
        self._step += 1
        every = self.config.verify_every
        if every and self._adapter is not None and self._adapter.distributed \
                and self._step % every == 0:
            verify_masks(self, self._adapter, self._step - 1)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "epoch": self._epoch, "config": self.config.to_dict(),
                "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = GradDropConfig.from_dict(state["config"])
        if self.requested.seed is None:  # a drawn seed is restored, not compared
            self.config = self.config.replace(seed=saved.seed)
        if saved != self.config:
            changed = [k for k, v in saved.to_dict().items() if self.config.to_dict()[k] != v]
            raise ValueError(f"graddrop state was saved with a different config "
                             f"(fields: {', '.join(changed)})")
        self._epoch = int(state["epoch"])
        self.set_step(int(state["step"]))

    # ----------------------------------------------------------------- the decisions
    def trainable(self, name: str) -> bool:
        return is_trainable(self.config, self.plans[name], self.epoch, self.layers)

    def schedule(self, name: str, step: int | None = None) -> tuple[int, float]:
        """(stream, drop rate) of parameter `name` at `step` (default: the current step)."""
        step = self._step if step is None else step
        epoch = self.epoch if step == self._step else self._epoch_of(step)
        return mask_schedule(self.config, self.plans[name], step, epoch, self.layers)

    def _epoch_of(self, step: int) -> int:
        # Without steps_per_epoch the epoch is whatever set_epoch() said last.
        return self._epoch if self.steps_per_epoch is None else step // self.steps_per_epoch

    def keep_mask(self, name: str, step: int | None = None) -> torch.Tensor:
        """The full keep mask of one parameter (shape of the parameter) at `step`."""
        plan = self.plans[name]
        stream, rate = self.schedule(name, step)
        return keep_mask(plan.numel, seed=self.config.seed, stream=stream, name=name,
                         drop_rate=rate,
                         block=plan.block(self.config.granularity)).view(plan.shape)

    def mask_args(self, name: str, start: int = 0) -> dict:
        """Keyword arguments of the mask functions (keep_mask, mask_gradient, compress) for
        parameter `name` from flat element `start`, at the current step."""
        stream, rate = self.schedule(name)
        return dict(seed=self.config.seed, stream=stream, name=name, drop_rate=rate,
                    offset=start, block=self.plans[name].block(self.config.granularity))

    def keep_bits(self, name: str, start: int = 0, length: int | None = None, *,
                  per_block: bool = False, device=None) -> torch.Tensor:
        """Keep bits of elements [start, start + length) of the flattened parameter at the
        current step; per_block: one bit per block of the granularity (a row, the tensor),
        for a span aligned to blocks. What communication compaction packs by."""
        length = self.plans[name].numel - start if length is None else length
        args = self.mask_args(name, start)
        block = args.pop("block")
        if per_block:  # keep(i) hashes i // block: block j's bit is index j with block 1
            length, block, args["offset"] = length // block, 1, start // block
        if args["drop_rate"] == 0.0:  # U >= 0 always: nothing to hash
            return torch.ones(length, dtype=torch.bool, device=device)
        return keep_mask(length, block=block, device=device, **args)

    def may_be_masked(self, name: str) -> bool:
        """Whether this parameter's gradient is ever touched (it needs a hook)."""
        return may_be_masked(self.config, self.plans[name])

    def masks_anything(self, name: str) -> bool:
        return self.schedule(name)[1] > 0.0

    def mask_(self, name: str, grad: torch.Tensor, *, offset: int = 0,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Mask a contiguous span of parameter `name` starting at global element `offset`
        (a whole local gradient, an FSDP shard or a slice of a flat buffer)."""
        plan = self.plans[name]
        stream, rate = self.schedule(name)
        if rate == 0.0:
            return grad if out is None else out.copy_(grad)
        return mask_gradient(grad, seed=self.config.seed, stream=stream, name=name,
                             drop_rate=rate, rescale=self.config.rescales, offset=offset,
                             block=plan.block(self.config.granularity), out=out)
