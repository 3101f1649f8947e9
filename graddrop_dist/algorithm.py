"""GradDrop: the algorithm object. It decides *which* mask a gradient gets (a `MaskSpec`
per parameter and step); a backend adapter (graddrop_dist/adapters/) decides *where* in the
backward pass it is applied.

The mask step is the optimizer step, never the micro-batch: every micro-batch of one
accumulated step sees the same mask, so masking before or after a reduction, or before
or after accumulation, is the same operation.

What an adapter sees of GradDrop is narrow (`MaskSource` in adapters/base.py): `spec(name)`,
the mask of a parameter at the current step (None: left alone); `maskable(name)`, whether
it is ever masked; `compact`; `rescales`; and `optimizer_stepped()`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import torch
import torch.distributed as dist

from graddrop_dist.adapters import adapter_for
from graddrop_dist.config import GradDropConfig
from graddrop_dist.ranks.agreement import raise_on_disagreement
from graddrop_dist.mask import canonical_name, dispatch
from graddrop_dist.mask.spec import MaskSpec, mask_code_version
from graddrop_dist.variants import (Draw, ParamPlan, mask_schedule, may_be_masked,
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
        self._specs: dict[str, tuple[tuple, MaskSpec]] = {}  # the latest, by name
        self._now: dict[str, MaskSpec | None] = {}  # this step's, by name (spec())
        self._now_at: tuple | None = None  # (step, epoch, seed) they are for

    # ----------------------------------------------------------------- attach / detach
    def attach(self, model, optimizer=None, *, steps_per_epoch: int | None = None,
               epochs: int | None = None, wrapped_by: str | None = None) -> GradDrop:
        """epochs: the run's length in epochs, which fills `unfreeze_epochs: null` (the
        last epoch: GradDropConfig.for_epochs). wrapped_by: "ddp" or "deepspeed" when
        `model` is the module inside such a wrapper (graddrop_dist.adapters.adapter_for
        picks the adapter from what `model` is)."""
        if self._adapter is not None:
            raise RuntimeError("GradDrop is already attached; call detach() first")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        config = self.requested if epochs is None else self.requested.for_epochs(epochs)
        if config.needs_unfreeze_epochs and config.unfreeze_epochs is None:
            raise ValueError(f"graddrop.unfreeze_epochs: {config.method} needs the epoch "
                             "from which everything trains; set it, or pass epochs= to "
                             "attach (graddrop-train passes the run's)")
        adapter = adapter_for(model, optimizer, wrapped_by=wrapped_by)
        before = self.config, self.plans
        self.config = config
        self.plans = self._plan(adapter.named_parameter_shapes())
        self.layers = num_layers(self.plans.values())
        if adapter.distributed:
            # Before any hook exists: a disagreement raises on every rank, no hang.
            self.config = self.config.replace(seed=self._agreed_seed(adapter))
        elif self.config.seed is None:
            self.config = self.config.replace(seed=secrets.randbelow(2**63))
        if (self.config, self.plans) != before:  # the specs' blocks and scales came from them
            self._specs.clear()
            self._now_at = None
        adapter.install(self)
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

    def _agreed_seed(self, adapter) -> int:
        """Every rank contributes what decides its masks; rank 0's seed is everyone's."""
        group = adapter.process_group()
        drawn = secrets.randbelow(2**63) if self.config.seed is None else self.config.seed
        shapes = "|".join(f"{name}:{plan.shape}" for name, plan in self.plans.items())
        payload = {
            **{f"graddrop.{key}": value for key, value in self.config.to_dict().items()},
            "backend": adapter.backend,
            "world_size": dist.get_world_size(group),
            "start_step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "parameters": f"{len(self.plans)} tensors, digest "
                          f"{hashlib.sha256(shapes.encode()).hexdigest()[:16]}",
            "mask_code": mask_code_version(),
        }
        gathered = raise_on_disagreement(payload, "ranks disagree before the first step",
                                         group, carry=drawn)
        return gathered[0]["carry"]

    @property
    def backend(self) -> str | None:
        """Where the mask acts now: single, ddp, fsdp1, fsdp2 or deepspeed (None: detached)."""
        return None if self._adapter is None else self._adapter.backend

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
        """Called by the adapter after every optimizer step: the next mask is new, and its
        specs are made now, after the step, rather than in the next backward pass, where
        each operation costs several times as much (and, on a GPU, delays the first
        bucket's launch rather than overlapping the optimizer's kernels)."""
        self._step += 1
        self._refresh_now()
        every = self.config.verify_every
        if every and self._adapter is not None and self._adapter.distributed \
                and self._step % every == 0:
            step = self._step - 1
            raise_on_disagreement({"mask fingerprint": self.fingerprint(step), "step": step},
                                  f"masks diverged at optimizer step {step}",
                                  self._adapter.process_group())

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "epoch": self._epoch, "config": self.config.to_dict(),
                "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = GradDropConfig.from_dict(state["config"])
        if self.requested.seed is None:  # a drawn seed is restored, not compared
            self.config = self.config.replace(seed=saved.seed)
            self._specs.clear()
            self._now_at = None
        if saved != self.config:
            changed = [k for k, v in saved.to_dict().items() if self.config.to_dict()[k] != v]
            raise ValueError(f"graddrop state was saved with a different config "
                             f"(fields: {', '.join(changed)})")
        self._epoch = int(state["epoch"])
        self.set_step(int(state["step"]))

    # ----------------------------------------------------------------- what adapters ask
    @property
    def compact(self) -> bool:
        return self.config.compact

    @property
    def rescales(self) -> bool:
        return self.config.rescales

    def maskable(self, name: str) -> bool:
        """Whether this parameter's gradient is ever touched (it needs a hook)."""
        return may_be_masked(self.config, self.plans[name])

    def schedule(self, name: str, step: int | None = None) -> Draw:
        """(stream, drop rate, below) of parameter `name` at `step` (default: now)."""
        step = self._step if step is None else step
        epoch = self.epoch if step == self._step else self._epoch_of(step)
        return mask_schedule(self.config, self.plans[name], step, epoch, self.layers)

    def _epoch_of(self, step: int) -> int:
        # Without steps_per_epoch the epoch is whatever set_epoch() said last.
        return self._epoch if self.steps_per_epoch is None else step // self.steps_per_epoch

    def spec(self, name: str, step: int | None = None) -> MaskSpec | None:
        """The mask of parameter `name` at `step` (default: now); None when it is left alone
        (rate 0: not masked, or not at this point of its schedule). Asked once per
        parameter per micro-batch by the hooks: the current step's answers are made for
        every parameter at its first question, in one loop (asked one by one between the
        backward's kernels, each cost several times as much), and kept."""
        if step is None:
            if self._now_at != (self._step, self.epoch, self.config.seed):
                self._refresh_now()
            return self._now[name]
        return self._spec_of(name, step, self._epoch_of(step))

    def _refresh_now(self) -> None:
        """Every parameter's spec at the current step, in one loop."""
        now = (self._step, self.epoch, self.config.seed)
        self._now = {each: self._spec_of(each, self._step, now[1]) for each in self.plans}
        self._now_at = now

    def _spec_of(self, name: str, step: int, epoch: int) -> MaskSpec | None:
        draw = mask_schedule(self.config, self.plans[name], step, epoch, self.layers)
        if draw.rate == 0.0 and draw.below == 1.0:
            return None
        drawn_for = (*draw, self.config.seed)
        latest = self._specs.get(name)
        if latest is not None and latest[0] == drawn_for:
            return latest[1]
        if latest is not None and latest[0][1:] == drawn_for[1:]:  # the next step's draw
            spec = latest[1].with_stream(draw.stream)
        else:
            spec = MaskSpec(self.config.seed, draw.stream, name, draw.rate,
                            self.plans[name].block(self.config.granularity),
                            self.config.rescales, draw.below)
        self._specs[name] = (drawn_for, spec)
        return spec

    # ----------------------------------------------------------------- looking at masks
    def keep_mask(self, name: str, step: int | None = None) -> torch.Tensor:
        """The full keep mask of one parameter (shape of the parameter) at `step`."""
        plan = self.plans[name]
        spec = self.spec(name, step)
        if spec is None:
            return torch.ones(plan.shape, dtype=torch.bool)
        return dispatch.keep_bits(spec, plan.numel).view(plan.shape)

    def fingerprint(self, step: int, sample: int = 4096) -> str:
        """Digest of the first `sample` keep bits of every masked parameter at `step`: what
        ranks compare (verify_every) and what each rank records after a run."""
        digest = hashlib.sha256()
        for name, plan in self.plans.items():
            spec = self.spec(name, step)
            if spec is None:
                continue
            bits = dispatch.keep_bits(spec, min(plan.numel, sample))
            band = f"{spec.below!r}:" if spec.below != 1.0 else ""
            digest.update(f"{name}:{spec.stream}:{spec.rate!r}:{band}".encode())
            digest.update(bits.numpy().tobytes())
        return digest.hexdigest()[:16]
