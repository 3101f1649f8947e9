"""DDP: mask each bucket in a communication hook, in place, right before its all-reduce.

The bucket is DDP's own flat buffer, so masking it in place allocates nothing. With
`no_sync()` accumulation the hook sees the accumulated gradient once, on the
synchronising micro-batch; the mask is linear and shared by all micro-batches of the
step, so that is the same as masking each one. DDP cannot unregister a hook: detach()
turns it into the plain all-reduce, and a later attach() re-arms it (dense or compacted),
so GradDrop can be switched off and on again.

DDP accepts one communication hook. If the model already has one (fp16 compression, a
user's own), the adapter masks in tensor hooks instead, which run before the reducer's
AccumulateGrad hook: the buckets are then filled with masked gradients and the user's
hook reduces them. The same tensor hooks serve the module inside a DDP wrapper nobody
hands over (`DDPModuleAdapter`: what a Hugging Face Trainer callback is given).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from graddrop_dist.adapters import _internals
from graddrop_dist.adapters.compaction import kept, pack_spans, unpack_spans
from graddrop_dist.adapters.single import TensorHookAdapter
from graddrop_dist.mask import canonical_name, dispatch


class DDPAdapter(TensorHookAdapter):
    backend = "ddp"
    distributed = True

    def named_parameters(self):
        return self.model.module.named_parameters()

    def process_group(self):
        return self.model.process_group

    def install_masking(self) -> None:
        names = {id(param): canonical_name(name) for name, param in self.named_parameters()}
        hooks = _internals.ddp_comm_hook_states(self.model)
        earlier = [state for state in hooks if isinstance(state, _BucketMasking)]
        if earlier:  # a detached GradDrop's hook (DDP cannot unregister one): re-arm it
            self.mode = "comm hook"
            earlier[0].arm(self.source, names)
            self._handles.append(earlier[0])
            return
        if hooks:  # another communication hook: DDP takes only one
            if self.source.compact:
                raise ValueError("graddrop.compact: this DDP model already has a "
                                 "communication hook, and compaction needs to be DDP's "
                                 "one; allowed: false, or a model without a comm hook")
            self.mode = "tensor hooks"
            super().install_masking()
            return
        self.mode = "comm hook"
        state = _BucketMasking(self.model.process_group)
        state.arm(self.source, names)
        self.model.register_comm_hook(state, _graddrop_allreduce)
        # DDP cannot unregister a comm hook: detach() turns it into the plain all-reduce.
        self._handles.append(state)


class _BucketMasking:
    def __init__(self, process_group) -> None:
        self.process_group = process_group
        self.source = None
        self.names: dict[int, str] = {}
        self.active = False

    def arm(self, source, names: dict[int, str]) -> None:
        self.source, self.names, self.active = source, names, True

    def remove(self) -> None:
        self.active = False


def _graddrop_allreduce(state: _BucketMasking, bucket):
    if not state.active:
        return allreduce_hook(state.process_group, bucket)
    if state.source.compact:
        return _compact_allreduce(state, bucket)
    # The gradients are views of the bucket's flat buffer (mask_spans refuses a span
    # outside it): one call masks them all.
    buffer = bucket.buffer()
    base, size = buffer.data_ptr(), buffer.element_size()
    spans = [(state.source.spec(state.names[id(param)]), (grad.data_ptr() - base) // size,
              grad.numel(), 0)
             for param, grad in zip(bucket.parameters(), bucket.gradients())]
    dispatch.mask_spans(buffer, spans)
    return allreduce_hook(state.process_group, bucket)


def _compact_allreduce(state: _BucketMasking, bucket):
    """All-reduce only the kept elements: every rank draws the same mask, so every rank
    packs the same positions, and the reduced values are scattered back into the bucket.
    Dropped elements never travel; the result equals masking then reducing densely."""
    buffer = bucket.buffer()
    pairs = [(grad.view(-1), kept(state.source.spec(state.names[id(param)]), 0, grad.numel()))
             for param, grad in zip(bucket.parameters(), bucket.gradients())]
    packed = torch.empty_like(buffer)
    packed = packed[:pack_spans(pairs, packed)].div_(dist.get_world_size(state.process_group))
    future = dist.all_reduce(packed, group=state.process_group, async_op=True).get_future()

    def unpack(done):
        unpack_spans(pairs, done.value()[0])
        return buffer

    return future.then(unpack)


class DDPModuleAdapter(TensorHookAdapter):
    """The module inside a DDP wrapper: tensor hooks run before the reducer's
    AccumulateGrad hook, so every bucket is filled with masked gradients. Compaction needs
    DDP's communication hook, which only the wrapper offers."""

    backend = "ddp"
    distributed = True

    def install(self, source) -> None:
        if source.compact:
            raise ValueError("graddrop.compact: the module inside DDP was given (the Hugging "
                             "Face Trainer hands callbacks no DDP wrapper), and compaction "
                             "needs DDP's communication hook; allowed there: false "
                             "(graddrop-train and accelerate's prepared DDP model allow true)")
        super().install(source)
