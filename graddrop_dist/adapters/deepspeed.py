"""DeepSpeed (ZeRO stages 0-3): mask in a tensor hook on every parameter.

The hook fires once per micro-batch with the full gradient (under ZeRO-3 the parameter is
partitioned but the gradient handed to the hook has its full `ds_shape`), before the
engine's reduce / reduce-scatter hooks, which hang off AccumulateGrad. The mask step is
the engine's applied optimizer step: `engine.step()` is called every micro-batch and only
steps at the gradient-accumulation boundary, when `global_steps` increases; a step the
engine skips (`skipped_steps` increases too) does not count. The module inside an engine
(`DeepSpeedModuleAdapter`: what a Hugging Face Trainer callback is given) is masked the
same way; its caller counts the steps.
"""

from __future__ import annotations

from graddrop_dist.adapters import COMPACTION_UNSUPPORTED, _internals
from graddrop_dist.adapters.single import TensorHookAdapter


class DeepSpeedAdapter(TensorHookAdapter):
    backend = "deepspeed"
    distributed = True

    def install(self, source) -> None:
        if source.compact:
            raise ValueError(COMPACTION_UNSUPPORTED["deepspeed"])
        super().install(source)

    def named_parameters(self):
        return self.model.module.named_parameters()

    def full_shape(self, param):
        return tuple(param.ds_shape) if hasattr(param, "ds_shape") else tuple(param.shape)

    def process_group(self):
        return getattr(self.model, "data_parallel_group", None)

    def install_step_counter(self) -> None:
        self._handles.append(_internals.deepspeed_on_applied_step(
            self.model, self.source.optimizer_stepped))


class DeepSpeedModuleAdapter(DeepSpeedAdapter):
    """The engine's module; its parameters carry `ds_shape` under ZeRO-3. Steps are
    counted by the caller (GradDropCallback.on_optimizer_step), not the engine."""

    def named_parameters(self):
        return self.model.named_parameters()

    def process_group(self):
        return _internals.deepspeed_data_parallel_group()

    def install_step_counter(self) -> None:
        return
