"""FSDP1 (FullyShardedDataParallel): each encoder layer its own unit, gradients
reduce-scattered per unit (all-reduced under NO_SHARD)."""

from __future__ import annotations

from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from graddrop_dist.backends.registry import FSDP1_STRATEGIES
from graddrop_dist.backends.sharded import ShardedBackend


class FSDP1Backend(ShardedBackend):
    name = "fsdp1"

    def wrap(self, model, layer_classes, *, fsdp1_strategy: str = "FULL_SHARD",
             use_orig_params: bool = True):
        if fsdp1_strategy not in FSDP1_STRATEGIES:
            raise ValueError(f"backend.fsdp1_strategy: expected one of "
                             f"{', '.join(FSDP1_STRATEGIES)}, got {fsdp1_strategy!r}")
        # device_id moves the model there unit by unit (on the CPU it must be given too).
        return FullyShardedDataParallel(
            model, sharding_strategy=ShardingStrategy[fsdp1_strategy], device_id=self.device,
            auto_wrap_policy=ModuleWrapPolicy(set(layer_classes)) if layer_classes else None,
            use_orig_params=use_orig_params)

    def no_sync(self):
        return self.model.no_sync()

    def grad_norm(self, max_norm: float) -> float:
        # FSDP1's own: the norm over every rank's shard.
        return float(self.model.clip_grad_norm_(max_norm))



    # FSDP1 rebuilds its original parameters' views of the flat shard as it trains, so a
    # view kept between evaluations may no longer be the storage forward reads. The copy is
    # taken from, and put back through, the gathered parameters (a collective: every rank
    # keeps the whole of each trainable tensor, on the CPU).
    def snapshot_weights(self):
        with FullyShardedDataParallel.summon_full_params(self.model, writeback=False):
            return super().snapshot_weights()

    def restore_weights(self, snapshot) -> None:
        with FullyShardedDataParallel.summon_full_params(self.model, writeback=True):
            super().restore_weights(snapshot)
