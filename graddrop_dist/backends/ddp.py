"""DistributedDataParallel: a full replica per rank, gradients all-reduced in buckets."""

from __future__ import annotations

from torch.nn.parallel import DistributedDataParallel

from graddrop_dist.backends.base import Backend


class DDPBackend(Backend):
    name = "ddp"

    def wrap(self, model, layer_classes):
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model.to(self.device), device_ids=device_ids)

    def no_sync(self):
        return self.model.no_sync()

    @property
    def module(self):
        return self.model.module
