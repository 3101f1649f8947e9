"""FSDP2 (`fully_shard`): mask the reduce-scatter input of every parameter group.

FSDP2 copies each parameter's unsharded gradient, padded along dim 0 to a multiple of the
world size, into one flat buffer viewed as [world_size, per_rank]: row r holds, for every
parameter in order, its dim-0 chunk r, i.e. global flat elements
[r * chunk, (r + 1) * chunk) of that parameter. A custom ReduceScatter (the public
`FSDPModule.set_custom_reduce_scatter` hook) masks each of those spans at its global offset
and then reduce-scatters as PyTorch does.

With `compact: true` only kept elements travel: each destination row is packed by the
shared mask, padded to the longest packed row, reduce-scattered, and expanded.

On one rank FSDP2 copies the buffer into the sharded gradient instead of reduce-scattering
it: there the all-reduce hook (`set_all_reduce_hook`, which runs on the copy) masks it.

Which parameters are in the buffer depends on which received a gradient. The adapter
turns on `set_reduce_scatter_unused_params(True)` so every parameter that requires grad is
always there (zeros if unused), which makes the layout a fixed function of the group.
"""

from __future__ import annotations

import math

import torch
from torch.distributed.fsdp import FSDPModule

from graddrop_dist.adapters import _internals
from graddrop_dist.adapters.base import Adapter
from graddrop_dist.adapters.compaction import Padding, compact_reduce_scatter, kept
from graddrop_dist.mask import canonical_name, dispatch


DefaultReduceScatter = _internals.fsdp2_default_reduce_scatter()


class MaskingReduceScatter(DefaultReduceScatter):
    def __init__(self, source, group_params) -> None:
        super().__init__()
        self.source = source
        # (canonical name, sharded parameter, unsharded size) of one group, in buffer order
        self.group_params = group_params

    def layout(self, world_size: int):
        """(name, numel, chunk) of each parameter in the buffer, in buffer order."""
        spans = []
        for name, sharded, size in self.group_params:
            if not sharded.requires_grad:
                continue
            numel = math.prod(size)
            padded_rows = math.ceil(size[0] / world_size) * world_size if len(size) else 1
            chunk = (padded_rows // world_size) * (numel // size[0] if len(size) else 1)
            spans.append((name, numel, chunk))
        return spans

    def __call__(self, output_tensor, input_tensor, group, op, async_op=False):
        world_size = group.size()
        spans = self.layout(world_size)
        if sum(chunk for *_, chunk in spans) * world_size != input_tensor.numel():
            raise RuntimeError(
                "GradDrop under FSDP2: the reduce-scatter buffer does not match the "
                f"parameter group ({input_tensor.numel()} elements for "
                f"{[name for name, *_ in spans]}); a parameter's requires_grad changed "
                "after fully_shard, which GradDrop cannot follow")
        rows = input_tensor.view(world_size, -1)
        if self.source.compact:
            return self._compacted(output_tensor, rows, spans, group, op)
        row_length, masked = rows.shape[1], []
        for rank in range(world_size):
            position = rank * row_length
            for name, numel, chunk in spans:
                real = max(0, min(chunk, numel - rank * chunk))  # the rest is padding
                if real:
                    masked.append((self.source.spec(name), position, real, rank * chunk))
                position += chunk
        dispatch.mask_spans(input_tensor.view(-1), masked)
        return super().__call__(output_tensor, input_tensor, group, op, async_op)


    def mask_whole_buffer(self, buffer: torch.Tensor) -> None:
        """One rank: the buffer is every parameter of the group, whole and unpadded."""
        spans, position = [], 0
        for name, numel, _ in self.layout(1):
            spans.append((self.source.spec(name), position, numel, 0))
            position += numel
        dispatch.mask_spans(buffer.view(-1), spans)

    def _compacted(self, output_tensor, rows, spans, group, op):
        """Reduce-scatter only kept elements (compaction.compact_reduce_scatter): row r,
        what rank r receives, holds every parameter's dim-0 chunk r at its global offset."""
        world_size = rows.shape[0]
        kept_rows = []
        for rank in range(world_size):
            described = []
            for name, numel, chunk in spans:
                real = max(0, min(chunk, numel - rank * chunk))  # the rest is padding
                if real:
                    described.append(kept(self.source.spec(name), rank * chunk, real))
                if chunk > real:
                    described.append(Padding(chunk - real))
            kept_rows.append(described)
        compact_reduce_scatter(output_tensor.view(-1), rows, kept_rows, group, op)
        return None


def fsdp2_modules(model: torch.nn.Module):
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


class FSDP2Adapter(Adapter):
    backend = "fsdp2"
    distributed = True

    def full_shape(self, param):
        return tuple(param.shape)  # a DTensor reports its global shape

    def process_group(self):
        groups = _internals.fsdp2_param_groups(fsdp2_modules(self.model)[0])
        return _internals.fsdp2_group_mesh(groups[0])[0]

    def install_masking(self) -> None:
        names = {id(param): canonical_name(name) for name, param in self.named_parameters()}
        for module in fsdp2_modules(self.model):
            groups = _internals.fsdp2_param_groups(module)
            if not groups:
                continue
            if len(groups) > 1:
                raise ValueError("GradDrop under FSDP2: a module with several parameter "
                                 "groups (shard_placement_fn meshes) is not supported")
            group = groups[0]
            params = []
            for sharded, dim, size in _internals.fsdp2_group_params(group):
                if dim != 0:
                    raise ValueError(f"GradDrop under FSDP2: parameters must be sharded on "
                                     f"dim 0, got Shard({dim})")
                params.append((names[id(sharded)], sharded, size))
            if not hasattr(module, "set_reduce_scatter_unused_params"):  # GRADDROP_ALLOW_OLD
                raise RuntimeError(f"GradDrop under FSDP2 needs torch >= 2.13 (FSDP2's "
                                   f"set_reduce_scatter_unused_params), found "
                                   f"{torch.__version__}")
            module.set_reduce_scatter_unused_params(True, recurse=False)
            masking = MaskingReduceScatter(self.source, params)
            if _internals.fsdp2_group_mesh(group)[1] == 1:
                # One rank: FSDP2 copies the buffer instead of reduce-scattering it, and
                # the first thing to see the copy is the all-reduce hook.
                module.set_all_reduce_hook(masking.mask_whole_buffer)
            else:
                module.set_custom_reduce_scatter(masking)
            self._handles.append(_RestoreReduceScatter(module))


class _RestoreReduceScatter:
    def __init__(self, module) -> None:
        self.module = module

    def remove(self) -> None:
        self.module.set_custom_reduce_scatter(DefaultReduceScatter())
        for group in _internals.fsdp2_param_groups(self.module):
            _internals.fsdp2_clear_all_reduce_hook(group)
        self.module.set_reduce_scatter_unused_params(False, recurse=False)
