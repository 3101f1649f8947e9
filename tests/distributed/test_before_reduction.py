"""The mask is applied before the collective: what each backend hands to its reduction
(all-reduce, reduce, reduce-scatter) is already sparse. Masking after the reduction (in
the optimizer, say) would give dense collective inputs and fail here, even though the
final parameters could be the same."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

from backend_runs import BACKENDS, attach, setup
from graddrop_dist import GradDrop
from graddrop_dist.testing.local_ranks import DistributedTest
from scenario import graddrop_config, micro_batches, new_model

_model = new_model()
HEAD_SHARE = sum(p.numel() for n, p in _model.named_parameters() if n.startswith("classifier")) \
    / sum(p.numel() for p in _model.parameters())
REDUCTIONS = ("all_reduce", "all_reduce_coalesced", "reduce", "reduce_scatter",
              "reduce_scatter_single", "reduce_scatter_tensor")


class ReductionSpy:
    """Counts zeros among the floating-point elements handed to every reduction."""

    def __init__(self) -> None:
        self.zeros = self.total = 0
        self._saved = []

    def record(self, tensor) -> None:
        tensors = tensor if isinstance(tensor, (list, tuple)) else [tensor]
        for item in tensors:
            if torch.is_tensor(item) and item.is_floating_point() and item.numel() > 64:
                self.zeros += int((item == 0).sum())
                self.total += item.numel()

    def install(self) -> None:
        for module in (dist, c10d):
            for name in REDUCTIONS:
                original = getattr(module, name, None)
                if original is None:
                    continue
                self._saved.append((module, name, original))
                setattr(module, name, self._wrap(original, name))

    def _wrap(self, original, name):
        def spy(*args, **kwargs):
            inputs = kwargs.get("input", kwargs.get("input_list", kwargs.get("tensor")))
            if inputs is None and args:
                inputs = args[1] if name.startswith("reduce_scatter") and len(args) > 1 \
                    else args[0]
            self.record(inputs)
            return original(*args, **kwargs)

        return spy

    def remove(self) -> None:
        for module, name, original in self._saved:
            setattr(module, name, original)


def zero_fraction(rank, world_size, backend, method):
    run = setup(backend, world_size)
    spy = ReductionSpy()
    if backend in ("ddp", "ddp-compact") and method == "full":
        # No GradDrop comm hook, so DDP's C++ reducer would all-reduce out of sight: the
        # default Python hook routes it through dist.all_reduce, which the spy watches.
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        run.model.register_comm_hook(None, allreduce_hook)
    attach(run, GradDrop(graddrop_config(dict(method=method)).replace(
        drop_rate=0.9, compact=backend.endswith("-compact"))))
    spy.install()
    try:
        for micro in micro_batches(rank, world_size):
            run.train_step(micro)
    finally:
        spy.remove()
        run.close()
    return spy.zeros / max(spy.total, 1), spy.total


@pytest.mark.distributed
class TestMaskedBeforeTheReduction(DistributedTest):
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_collective_inputs_are_sparse(self, backend):
        masked = self.run(zero_fraction, backend, "graddrop")
        dense = self.run(zero_fraction, backend, "full")
        for (fraction, total), (dense_fraction, dense_total) in zip(masked, dense):
            assert total > 0, "no reduction was observed"
            if backend.endswith("-compact"):
                # Dropped elements never travel: p = 0.9 on all but the head (5% of the
                # model): 0.1 x 0.95 + 0.05 = 0.145 of dense. Sharded backends pad each
                # shard's packed row to the longest, and the head sits in one shard: its
                # share is sent once more (2 ranks).
                bound = 0.15 + (HEAD_SHARE if "fsdp" in backend else 0.0)
                assert total < bound * dense_total, (total, dense_total, bound)
                continue
            # p = 0.9 on everything but the small head: at least 80% zeros go in.
            assert fraction > 0.8, (fraction, dense_fraction)
            assert dense_fraction < 0.3, dense_fraction


def deepspeed_mode(rank, world_size, backend, rescale):
    run = setup(backend, world_size)
    graddrop = attach(run, GradDrop(graddrop_config(dict(method="graddrop")).replace(
        rescale=rescale)))
    mode = graddrop._adapter.mode
    graddrop.detach()
    run.close()
    return mode


@pytest.mark.distributed
class TestWhereDeepSpeedIsMasked(DistributedTest):
    @pytest.mark.parametrize("backend", ["zero1", "zero2", "zero3"])
    def test_the_zero_optimizers_are_masked_in_their_buckets(self, backend):
        """One call a bucket (the collective-input test above proves it happens before the
        reduction); with rescaling too, the buckets being in the gradients' dtype."""
        assert self.run(deepspeed_mode, backend, True) == ["reduction buckets"] * 2
