"""DDP: mask in a tensor hook, which runs before the reducer's AccumulateGrad hook, so
the bucketed all-reduce already carries masked gradients. With `no_sync()` accumulation
every micro-batch is masked with the mask of the coming optimizer step."""

from __future__ import annotations

from graddrop_dist.backends.base import TensorHookAdapter


class DDPAdapter(TensorHookAdapter):
    backend = "ddp"
    distributed = True

    def named_parameters(self):
        return self.model.module.named_parameters()

    def process_group(self):
        return self.model.process_group
