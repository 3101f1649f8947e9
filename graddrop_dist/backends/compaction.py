"""Communication compaction: pack what the shared mask keeps, reduce only that, unpack.

Every rank draws the same mask, so every rank packs the same positions: no index travels
and the reduced values land where the dense path would have put them. `Kept` is the set
of kept elements of one contiguous span of a parameter, packed the cheapest way:
- everything (an unmasked parameter, or rate 0): the span itself is sent;
- row or tensor granularity, span aligned to the blocks: the kept blocks' indices, and
  packing is a gather of whole rows (one draw per row, a memcpy-like copy);
- otherwise per element: on CPU (fp32, bf16) the fused kernel hashes and packs in one
  pass with no mask in memory (`mask.fused.compress` / `expand`); elsewhere the keep bits
  are drawn and the span is selected by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from graddrop_dist.mask import rescale_factor
from graddrop_dist.mask.fused import compress, expand


@dataclass
class Kept:
    length: int
    scale: float = 1.0  # 1/(1-p) with rescale, applied while packing
    blocks: torch.Tensor | None = None  # int64 indices of kept blocks in the span
    block: int = 1
    draw: dict | None = field(default=None, repr=False)  # mask arguments, element path
    graddrop: object = field(default=None, repr=False)
    _elements: torch.Tensor | None = field(default=None, repr=False)
    _count: int | None = None

    @classmethod
    def of(cls, graddrop, name: str, start: int = 0, length: int | None = None) -> Kept:
        """The kept elements of [start, start + length) of parameter `name`, flattened."""
        plan = graddrop.plans[name]
        length = plan.numel - start if length is None else length
        if not graddrop.may_be_masked(name):
            return cls(length)
        draw = graddrop.mask_args(name, start)
        if draw["drop_rate"] == 0.0:
            return cls(length)
        scale = rescale_factor(draw["drop_rate"], graddrop.config.rescales)
        block = draw["block"]
        if block > 1 and start % block == 0 and length % block == 0:
            bits = graddrop.keep_bits(name, start, length, per_block=True)
            return cls(length, scale, blocks=bits.nonzero().view(-1), block=block)
        return cls(length, scale, draw=draw, graddrop=graddrop)

    def elements(self, device) -> torch.Tensor:
        """One keep bit per element of the span (drawn on first use), on `device` (None:
        wherever they were drawn)."""
        if self._elements is None:
            self._elements = self.graddrop.keep_bits(self.draw["name"], self.draw["offset"],
                                                     self.length, device=device)
        if device is not None and self._elements.device != torch.device(device):
            self._elements = self._elements.to(device)
        return self._elements

    def block_indices(self, device) -> torch.Tensor:
        """The kept blocks' indices, on the device of the span they index (a GPU's)."""
        if self.blocks.device != device:
            self.blocks = self.blocks.to(device)
        return self.blocks

    @property
    def count(self) -> int:
        """Kept elements (known once packed; the keep bits are drawn if asked before)."""
        if self._count is None:
            if self.draw is not None:
                self._count = int(self.elements(None).sum())
            elif self.blocks is not None:
                self._count = self.blocks.numel() * self.block
            else:
                self._count = self.length
        return self._count

    def pack_into(self, span: torch.Tensor, out: torch.Tensor) -> int:
        """Write the kept values of a flat span (times the rescale factor) to the start of
        `out`, which has room for the whole span; returns how many."""
        count = None
        if self.draw is not None:  # the fused kernel rescales as it packs
            count = compress(span, out, rescale=self.scale != 1.0, **self.draw)
        if count is None:
            if self.draw is not None:  # not a CPU fp32 / bf16 span: select by keep bits
                values = span[self.elements(span.device)]
            elif self.blocks is not None:
                values = span.view(-1, self.block).index_select(
                    0, self.block_indices(span.device)).view(-1)
            else:
                values = span
            count = values.numel()
            packed = out[:count].copy_(values)
            if self.scale != 1.0:
                packed.mul_(self.scale)
        self._count = count
        return count

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        """Write packed values back into the span in place; dropped elements become 0."""
        if self.draw is None and self.blocks is None:
            span.copy_(values)
        elif self.draw is not None:
            if not expand(values, span, **self.draw):
                span.zero_()
                span.masked_scatter_(self.elements(span.device), values)
        else:
            span.zero_()
            span.view(-1, self.block).index_copy_(0, self.block_indices(span.device),
                                                  values.view(-1, self.block))


def padding(length: int) -> Kept:
    """A span of padding: nothing in it is sent, and it comes back as zeros."""
    return Kept(length, blocks=torch.zeros(0, dtype=torch.long), block=length or 1)


def spans_of(flat: torch.Tensor, kept: list[Kept]) -> list[tuple[torch.Tensor, Kept]]:
    """Cut a flat buffer into the consecutive spans the Kept list describes."""
    pairs, position = [], 0
    for item in kept:
        pairs.append((flat[position:position + item.length], item))
        position += item.length
    return pairs


def pack_spans(pairs: list[tuple[torch.Tensor, Kept]], out: torch.Tensor) -> int:
    """Pack every span's kept values one after another into `out` (room for all spans);
    returns how many."""
    position = 0
    for span, kept in pairs:
        position += kept.pack_into(span, out[position:])
    return position


def unpack_spans(pairs: list[tuple[torch.Tensor, Kept]], values: torch.Tensor) -> None:
    """The inverse of pack_spans, in place; dropped elements become 0."""
    position = 0
    for span, kept in pairs:
        kept.unpack(span, values[position:position + kept.count])
        position += kept.count


def compact_reduce_scatter(output: torch.Tensor, rows: torch.Tensor,
                           kept_rows: list[list[Kept]], group, op=dist.ReduceOp.SUM,
                           divide: float = 1.0) -> None:
    """Reduce-scatter `rows` ([world_size, per_rank]; row r is what rank r receives) sending
    only kept elements: row r is packed by kept_rows[r] (the spans of row r in order), rows
    are padded to the longest packed row, reduce-scattered, and this rank's row is
    unpacked into `output`. Every rank knows every row's count, so the padding agrees.
    `divide`: a pre-division applied after packing (the dense path's order: mask, then
    divide), so results are bitwise those of masking then reducing densely."""
    packed = torch.empty_like(rows)
    counts = [pack_spans(spans_of(rows[rank], kept), packed[rank])
              for rank, kept in enumerate(kept_rows)]
    longest = max(counts)
    for rank, count in enumerate(counts):
        packed[rank, count:longest].zero_()
    send = packed[:, :longest].contiguous()
    if divide != 1.0:
        send.div_(divide)
    received = rows.new_empty(longest)
    dist.reduce_scatter_single(received, send.view(-1), op=op, group=group)
    unpack_spans(spans_of(output, kept_rows[dist.get_rank(group)]), received)
