"""DeepSpeed (ZeRO stages 0-3): mask each bucket of gradients right before the ZeRO
optimizer reduces it, or in tensor hooks where it reduces otherwise.

ZeRO-1/2 (with contiguous_gradients, DeepSpeed's default) and ZeRO-3 copy the gradients
into a flat bucket and reduce or reduce-scatter it: the adapter masks every parameter's
span of the bucket, in place, in one call, just before (adapters/_internals.py,
`deepspeed_before_bucket_reduction`); under ZeRO-3 a gradient has its full `ds_shape`
there. With gradient accumulation, ZeRO-1 reduces the sum of the micro-batches once, at
the boundary: the mask is shared by all micro-batches of a step and linear, so masking the
sum is masking each one. Elsewhere (ZeRO-0, the engine's bf16 / fp16 optimizers, ZeRO-1/2
without contiguous_gradients, a bucket reduced in another dtype than the gradients while
rescaling) a tensor hook on every parameter masks its full gradient before it accumulates,
before the engine's reduction hooks, which hang off AccumulateGrad.

The mask step is the engine's applied optimizer step: `engine.step()` is called every
micro-batch and only steps at the gradient-accumulation boundary, when `global_steps`
increases; a step the engine skips (`skipped_steps` increases too) does not count. The
module inside an engine (`DeepSpeedModuleAdapter`: what a Hugging Face Trainer callback is
given) is masked by tensor hooks; its caller counts the steps.
"""

from __future__ import annotations

import torch

from graddrop_dist.adapters import COMPACTION_UNSUPPORTED, _internals
from graddrop_dist.adapters.single import TensorHookAdapter
from graddrop_dist.mask import canonical_name, dispatch


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

    def install_masking(self) -> None:
        self.mode = "tensor hooks"
        params = [param for _, param in self.named_parameters() if param.requires_grad]
        optimizer = self.model.optimizer
        # Rescaled values are rounded in the dtype they are scaled in: the reference scales
        # the gradient itself, so a bucket in another dtype would round differently.
        reduced_in = _internals.deepspeed_reduction_dtypes(optimizer, params)
        if reduced_in is None or (self.source.rescales and
                                  reduced_in != {param.dtype for param in params}):
            return super().install_masking()
        names = {id(param): canonical_name(name) for name, param in self.named_parameters()}
        handle = _internals.deepspeed_before_bucket_reduction(
            optimizer, lambda flat, spans: _mask_bucket(self.source, names, flat, spans))
        if handle is None:
            return super().install_masking()
        self.mode = "reduction buckets"
        self._handles.append(handle)

    def install_step_counter(self) -> None:
        self._handles.append(_internals.deepspeed_on_applied_step(
            self.model, self.source.optimizer_stepped))


def _mask_bucket(source, names: dict[int, str], flat: torch.Tensor, spans) -> None:
    """Mask the spans, (param, start, numel), of one flat tensor of gradients in place."""
    masked = [(source.spec(names[id(param)]), start, numel, 0) for param, start, numel in spans]
    if flat.is_contiguous():
        dispatch.mask_spans(flat.view(-1), masked)
        return
    for spec, *_ in masked:  # a strided gradient of its own: one span, the whole tensor
        if spec is not None:
            flat.copy_(dispatch.apply_mask(spec, flat))


class DeepSpeedModuleAdapter(DeepSpeedAdapter):
    """The engine's module; its parameters carry `ds_shape` under ZeRO-3. Steps are
    counted by the caller (GradDropCallback.on_optimizer_step), not the engine."""

    def named_parameters(self):
        return self.model.named_parameters()

    def process_group(self):
        return _internals.deepspeed_data_parallel_group()

    def install_masking(self) -> None:
        self.mode = "tensor hooks"  # no engine here, so no bucket to reach
        TensorHookAdapter.install_masking(self)

    def install_step_counter(self) -> None:
        return
