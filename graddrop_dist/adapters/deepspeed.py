"""DeepSpeed (ZeRO stages 0-3): mask in a tensor hook on every parameter.

The hook fires once per micro-batch with the full gradient (under ZeRO-3 the parameter is
partitioned but the gradient handed to the hook has its full `ds_shape`), before the
engine's reduce / reduce-scatter hooks, which hang off AccumulateGrad. The mask step is
the engine's applied optimizer step: `engine.step()` is called every micro-batch and only
steps at the gradient-accumulation boundary, when `global_steps` increases; a step the
engine skips (`skipped_steps` increases too) does not count.
"""

from __future__ import annotations

from graddrop_dist.adapters.base import TensorHookAdapter
from graddrop_dist.config import DEEPSPEED_COMPACT_ERROR


class DeepSpeedAdapter(TensorHookAdapter):
    backend = "deepspeed"
    distributed = True

    def install(self, source) -> None:
        if source.compact:
            raise ValueError(DEEPSPEED_COMPACT_ERROR)
        super().install(source)

    def named_parameters(self):
        return self.model.module.named_parameters()

    def full_shape(self, param):
        return tuple(param.ds_shape) if hasattr(param, "ds_shape") else tuple(param.shape)

    def process_group(self):
        return getattr(self.model, "data_parallel_group", None)

    def install_step_counter(self) -> None:
        engine = self.model
        engine_step = engine.step
        source = self.source

        def step(*args, **kwargs):
            before = engine.global_steps, engine.skipped_steps
            result = engine_step(*args, **kwargs)
            # global_steps also counts a step the engine skipped (an fp16 overflow, a
            # non-finite gradient): only an applied step moves the mask on.
            if engine.global_steps != before[0] and engine.skipped_steps == before[1]:
                source.optimizer_stepped()
            return result

        # An instance attribute shadows the method; remove() deletes it again.
        engine.step = step
        self._handles.append(_DeleteAttribute(engine, "step"))


class _DeleteAttribute:
    def __init__(self, owner, name: str) -> None:
        self.owner, self.name = owner, name

    def remove(self) -> None:
        self.owner.__dict__.pop(self.name, None)
