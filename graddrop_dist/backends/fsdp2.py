"""FSDP2 (`fully_shard`): each encoder layer its own group on a device mesh of every rank,
gradients reduce-scattered per group."""

from __future__ import annotations

import contextlib

import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from graddrop_dist.backends.sharded import ShardedBackend


class FSDP2Backend(ShardedBackend):
    name = "fsdp2"

    def wrap(self, model, layer_classes):
        # The mesh's device type is this rank's device (fully_shard would otherwise pick
        # CUDA whenever it exists, also for a CPU run).
        mesh = init_device_mesh(self.device.type, (dist.get_world_size(),))
        model.to(self.device)
        for module in list(model.modules()):
            if layer_classes and isinstance(module, layer_classes):
                fully_shard(module, mesh=mesh)
        return fully_shard(model, mesh=mesh)

    @contextlib.contextmanager
    def no_sync(self):
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)

    # The root group stays unsharded after a forward (its backward would need it at
    # once); its sharded parameters, which the copy is read from and written to, are what
    # forward reads only once every group is resharded.
    def _reshard(self) -> None:
        for module in self.model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    def snapshot_weights(self):
        self._reshard()
        return super().snapshot_weights()

    def restore_weights(self, snapshot) -> None:
        self._reshard()
        super().restore_weights(snapshot)
