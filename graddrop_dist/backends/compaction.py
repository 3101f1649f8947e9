"""Communication compaction: pack what the shared mask keeps, reduce only that, unpack.

Every rank draws the same mask, so every rank packs the same positions: no index travels
and the reduced values land where the dense path would have put them. `Kept` is the set
of kept elements of one contiguous span of a parameter, in the cheapest form available:
- everything (an unmasked parameter, or rate 0): the span itself is sent;
- row or tensor granularity, span aligned to the blocks: the kept blocks' indices, and
  packing is a gather of whole rows (one draw per row, so a tenth of the hashing and a
  memcpy-like copy instead of a per-element select);
- otherwise one keep bit per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from graddrop_dist.mask import rescale_factor


@dataclass
class Kept:
    length: int
    scale: float = 1.0  # 1/(1-p) with rescale, applied while packing
    elements: torch.Tensor | None = None  # bool [length]
    blocks: torch.Tensor | None = None  # int64 indices of kept blocks in the span
    block: int = 1

    @classmethod
    def of(cls, graddrop, name: str, start: int = 0, length: int | None = None,
           device=None) -> Kept:
        """The kept elements of [start, start + length) of parameter `name`, flattened."""
        plan = graddrop.plans[name]
        length = plan.numel - start if length is None else length
        if not graddrop.may_be_masked(name):
            return cls(length)
        rate = graddrop.schedule(name)[1]
        block = plan.block(graddrop.config.granularity)
        by_block = block > 1 and start % block == 0 and length % block == 0
        bits = graddrop.keep_bits(name, start, length, per_block=by_block, device=device)
        if rate == 0.0:
            return cls(length)
        scale = rescale_factor(rate, graddrop.config.rescales)
        if by_block:
            return cls(length, scale, blocks=bits.nonzero().view(-1), block=block)
        return cls(length, scale, elements=bits)

    @property
    def count(self) -> int:
        if self.elements is not None:
            return int(self.elements.sum())
        if self.blocks is not None:
            return self.blocks.numel() * self.block
        return self.length

    def pack(self, span: torch.Tensor) -> torch.Tensor:
        """The kept values of a flat span, times the rescale factor (a new tensor)."""
        if self.elements is not None:
            values = span[self.elements]
        elif self.blocks is not None:
            values = span.view(-1, self.block).index_select(0, self.blocks).view(-1)
        else:
            values = span.clone()
        return values.mul_(self.scale) if self.scale != 1.0 else values

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        """Write packed values back into the span in place; dropped elements become 0."""
        if self.elements is None and self.blocks is None:
            span.copy_(values)
            return
        span.zero_()
        if self.elements is not None:
            span.masked_scatter_(self.elements, values)
        else:
            span.view(-1, self.block).index_copy_(0, self.blocks, values.view(-1, self.block))


def padding(length: int) -> Kept:
    """A span of padding: nothing in it is sent, and it comes back as zeros."""
    return Kept(length, blocks=torch.zeros(0, dtype=torch.long), block=length or 1)


def compact_reduce_scatter(output: torch.Tensor, rows: torch.Tensor,
                           kept_rows: list[list[Kept]], group, op=dist.ReduceOp.SUM,
                           divide: float = 1.0) -> None:
    """Reduce-scatter `rows` ([world_size, per_rank]; row r is what rank r receives) sending
    only kept elements: row r is packed by kept_rows[r] (the spans of row r in order), rows
    are padded to the longest packed row, reduce-scattered, and this rank's row is
    unpacked into `output`. Every rank knows every row's count, so the padding agrees.
    `divide`: a pre-division applied after packing (the dense path's order: mask, then
    divide), so results are bitwise those of masking then reducing densely."""
    world_size = rows.shape[0]
    packed = []
    for rank in range(world_size):
        pieces, position = [], 0
        for kept in kept_rows[rank]:
            pieces.append(kept.pack(rows[rank, position:position + kept.length]))
            position += kept.length
        packed.append(torch.cat(pieces) if pieces else rows.new_zeros(0))
    longest = max(p.numel() for p in packed)
    send = rows.new_zeros(world_size, longest)
    for rank, values in enumerate(packed):
        send[rank, :values.numel()] = values
    if divide != 1.0:
        send.div_(divide)
    received = rows.new_empty(longest)
    dist.reduce_scatter_single(received, send.view(-1), op=op, group=group)
    position, offset = 0, 0
    for kept in kept_rows[dist.get_rank(group)]:
        kept.unpack(output[offset:offset + kept.length],
                    received[position:position + kept.count])
        position += kept.count
        offset += kept.length
