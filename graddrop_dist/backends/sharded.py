"""What FSDP1 and FSDP2 share: each rank holds a shard, so the loss scaler must agree
across ranks on an overflow, and the full parameters are gathered to rank 0's CPU."""

from __future__ import annotations

from graddrop_dist.backends.base import Backend, canonical_on_cpu


class ShardedBackend(Backend):
    def make_scaler(self):
        # Each rank sees only its shard: ShardedGradScaler all-reduces "found inf".
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device=self.device.type)

    def full_parameters(self):
        """From a GPU: on rank 0 only (other ranks get an empty dict), gathered unit by
        unit to the CPU, so the whole model never sits on one GPU. On the CPU: on every
        rank (FSDP1's CPU offload of CPU tensors frees memory it still reads)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_model_state_dict)

        state = get_model_state_dict(self.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=self.device.type != "cpu"))
        return canonical_on_cpu(state.items())
