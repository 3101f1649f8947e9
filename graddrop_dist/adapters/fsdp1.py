"""FSDP1 (FullyShardedDataParallel, every sharding strategy but the hybrid ones).

FSDP1 reduces one flat gradient per unit. Its communication hook receives that full,
unsharded, padded flat gradient (`hook(state, grad, output)`, or `hook(state, grad)` for
NO_SHARD) before the reduce-scatter / all-reduce: the adapter masks every parameter's
segment of it in place (the buffer is FSDP's own), then runs PyTorch's default hook.

`register_comm_hook` hands the same state to every unit; the hook must know which flat
parameter it sees, so after registering, each unit's hook state is set to one carrying
that unit's layout (the private field register_comm_hook writes: adapters/_internals.py).

With `compact: true` only kept elements travel. The flat gradient is [world_size, shard]:
row r, what rank r keeps, is packed by the shared mask span by span (a parameter can
straddle two shards), rows are padded to the longest packed row (every rank knows every
count), reduce-scattered, and this rank's row is unpacked into FSDP's output shard.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

from graddrop_dist.adapters import _internals
from graddrop_dist.adapters.base import Adapter
from graddrop_dist.adapters.compaction import (Padding, compact_reduce_scatter, kept,
                                                pack_spans, spans_of, unpack_spans)
from graddrop_dist.mask import canonical_name, dispatch

default_hooks = _internals.fsdp1_default_hooks()
HYBRID = _internals.fsdp1_hybrid_strategies()
SUPPORTED = ", ".join(s.name for s in ShardingStrategy
                      if s not in HYBRID and not s.name.startswith("_"))


class _UnitState(default_hooks.DefaultState):
    """DefaultState (gradient pre/post division) plus this unit's flat layout."""

    def __init__(self, process_group, source, segments, layout=()):
        super().__init__(process_group)
        self.source = source
        self.segments = segments  # (name, start, numel) of the maskable parameters
        self.layout = layout  # (name or None for padding, start, numel): the whole buffer


def _masking_hook(state: _UnitState, grad: torch.Tensor, output: torch.Tensor | None = None):
    if state.source.compact:
        return _compact_hook(state, grad, output)
    dispatch.mask_spans(grad, [(state.source.spec(name), start, numel, 0)
                               for name, start, numel in state.segments])
    if output is None:
        default_hooks.allreduce_hook(state, grad)
    else:
        default_hooks.reduce_scatter_hook(state, grad, output)


def _kept_rows(state: _UnitState, total: int, rows: int) -> list[list]:
    """Each shard's spans, in order: parameter pieces cut at shard boundaries, padding."""
    shard = total // rows
    spans: list[list] = [[] for _ in range(rows)]
    layout = list(state.layout)
    covered = sum(numel for *_, numel in layout)
    if covered < total:
        layout.append((None, covered, total - covered))  # FSDP's world-size padding
    for name, start, numel in layout:
        position = start
        while position < start + numel:
            row = position // shard
            piece = min(start + numel, (row + 1) * shard) - position
            spans[row].append(Padding(piece) if name is None else
                              kept(state.source.spec(name), position - start, piece))
            position += piece
    return spans


def _compact_hook(state: _UnitState, grad: torch.Tensor, output: torch.Tensor | None):
    # Pre-division after packing, as the dense path divides after masking: same bits.
    divide = state.gradient_predivide_factor
    if output is None:  # NO_SHARD: one all-reduce of the packed kept values
        (kept,) = _kept_rows(state, grad.numel(), 1)
        pairs = spans_of(grad, kept)
        packed = torch.empty_like(grad)
        packed = packed[:pack_spans(pairs, packed)]
        if divide > 1:
            packed.div_(divide)
        dist.all_reduce(packed, group=state.process_group)
        unpack_spans(pairs, packed)
        output = grad
    else:
        world_size = dist.get_world_size(state.process_group)
        compact_reduce_scatter(output, grad.view(world_size, -1),
                               _kept_rows(state, grad.numel(), world_size),
                               state.process_group, divide=max(divide, 1.0))
    if state.gradient_postdivide_factor > 1:
        output.div_(state.gradient_postdivide_factor)


def _units(root: FullyShardedDataParallel):
    """(module path, FSDP unit) for every unit that owns a flat parameter."""
    for path, module in root.named_modules():
        if isinstance(module, FullyShardedDataParallel) and \
                _internals.fsdp1_flat_param(module) is not None:
            yield path, module


def _segments(path: str, unit: FullyShardedDataParallel, with_padding: bool = False):
    """(name, start, numel) of each parameter in the unit's flat gradient; with_padding:
    alignment padding too, as (None, start, numel)."""
    fqns, numels, padding, _ = _internals.fsdp1_flat_layout(_internals.fsdp1_flat_param(unit))
    names = iter(fqns)
    start = 0
    for numel, is_padding in zip(numels, padding):
        if not is_padding:
            fqn = next(names)
            yield (f"{path}.{fqn}" if path else fqn), start, numel
        elif with_padding:
            yield None, start, numel
        start += numel


class FSDP1Adapter(Adapter):
    backend = "fsdp1"
    distributed = True

    def __init__(self, model, optimizer=None) -> None:
        super().__init__(model, optimizer)
        for _, unit in _units(model):
            if unit.sharding_strategy in HYBRID:
                raise ValueError(f"GradDrop under FSDP1: sharding_strategy "
                                 f"{unit.sharding_strategy.name} is not supported (FSDP1 has "
                                 f"no communication hook for hybrid sharding); allowed: "
                                 f"{SUPPORTED}")
            mixed = unit.mixed_precision
            if mixed is not None and mixed.reduce_dtype not in (None, mixed.param_dtype):
                raise ValueError("GradDrop under FSDP1: mixed_precision.reduce_dtype must "
                                 "equal param_dtype (the communication hook reduces in the "
                                 "gradient's dtype)")

    def named_parameter_shapes(self):
        named = []
        for path, unit in _units(self.model):
            *_, shapes = _internals.fsdp1_flat_layout(_internals.fsdp1_flat_param(unit))
            for (name, _, _), shape in zip(_segments(path, unit), shapes):
                named.append((name, tuple(shape)))
        return named

    def named_parameters(self):
        raise NotImplementedError("FSDP1 parameters are read from the flat parameters")

    def process_group(self):
        return self.model.process_group

    def install(self, source) -> None:
        self.source = source
        units = list(_units(self.model))
        layouts = [[(n and canonical_name(n), s, k)
                    for n, s, k in _segments(path, unit, with_padding=True)]
                   for path, unit in units]
        maskable = [[seg for seg in layout if seg[0] and source.maskable(seg[0])]
                    for layout in layouts]
        if any(maskable):
            self.model.register_comm_hook(None, _masking_hook)
            for state in _internals.fsdp1_states(self.model):  # units without parameters
                _internals.fsdp1_set_comm_hook_state(
                    state, _UnitState(state.process_group, source, []))
            for (_, unit), segments, layout in zip(units, maskable, layouts):
                _internals.fsdp1_set_comm_hook_state(
                    unit, _UnitState(unit.process_group, source, segments, layout))
            self._handles.append(_UnregisterCommHooks(self.model))
        self.install_step_counter()


class _UnregisterCommHooks:
    def __init__(self, root) -> None:
        self.root = root

    def remove(self) -> None:
        for state in _internals.fsdp1_states(self.root):
            _internals.fsdp1_clear_comm_hook(state)
