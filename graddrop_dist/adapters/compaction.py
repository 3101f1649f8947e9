"""Communication compaction: pack what the shared mask keeps, reduce only that, unpack.

Every rank draws the same mask, so every rank packs the same positions: no index travels
and the reduced values land where the dense path would have put them. `kept(spec, start,
length)` describes the kept elements of one contiguous span of a parameter, packed the
cheapest way:
- `Whole`: nothing masked there (no spec: an unmasked parameter, or rate 0): the span
  itself is sent;
- `KeptBlocks`: row or tensor granularity, span aligned to the blocks: the kept blocks'
  indices, and packing is a gather of whole rows (one draw per row, a memcpy-like copy);
- `KeptElements`: per element: on CPU (fp32, bf16) the C kernel hashes and packs in one
  pass with no mask in memory (`dispatch.compress` / `expand`); elsewhere the keep bits
  are drawn and the span is selected by them;
- `Padding`: what FSDP pads a flat buffer with: nothing is sent, zeros come back.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from graddrop_dist.mask import dispatch
from graddrop_dist.mask.spec import MaskSpec


class Whole:
    """Every element of the span travels."""

    def __init__(self, length: int) -> None:
        self.length = self.count = length

    def pack_into(self, span: torch.Tensor, out: torch.Tensor) -> int:
        out[:self.length].copy_(span)
        return self.length

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        span.copy_(values)


class Padding(Whole):
    """Nothing travels; the span comes back as zeros."""

    def __init__(self, length: int) -> None:
        self.length, self.count = length, 0

    def pack_into(self, span: torch.Tensor, out: torch.Tensor) -> int:
        return 0

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        span.zero_()


class KeptBlocks:
    """Whole rows (or the whole tensor) kept or dropped; the span starts and ends on a
    block boundary."""

    def __init__(self, spec: MaskSpec, start: int, length: int) -> None:
        self.spec, self.start, self.length, self.block = spec, start, length, spec.block
        bits = dispatch.keep_bits(spec.per_block(), length // spec.block,
                                  offset=start // spec.block)
        self.blocks = bits.nonzero().view(-1)  # kept block indices, moved to the span's device
        self.count = self.blocks.numel() * self.block

    def _indices(self, device) -> torch.Tensor:
        if self.blocks.device != device:
            self.blocks = self.blocks.to(device)
        return self.blocks

    def pack_into(self, span: torch.Tensor, out: torch.Tensor) -> int:
        dispatch.announce(self.spec, self.start, self.length)
        rows = span.view(-1, self.block).index_select(0, self._indices(span.device))
        packed = out[:self.count].copy_(rows.view(-1))
        if self.spec.scale != 1.0:
            packed.mul_(self.spec.scale)
        return self.count

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        span.zero_()
        span.view(-1, self.block).index_copy_(0, self._indices(span.device),
                                              values.view(-1, self.block))


class KeptElements:
    """One draw per element (or blocks the span cuts through)."""

    def __init__(self, spec: MaskSpec, start: int, length: int) -> None:
        self.spec, self.start, self.length = spec, start, length
        self._bits: torch.Tensor | None = None
        self._count: int | None = None

    def bits(self, device=None) -> torch.Tensor:
        """One keep bit per element of the span (drawn on first use), on `device`."""
        if self._bits is None:
            self._bits = dispatch.keep_bits(self.spec, self.length, offset=self.start,
                                            device=device)
        if device is not None and self._bits.device != torch.device(device):
            self._bits = self._bits.to(device)
        return self._bits

    @property
    def count(self) -> int:
        """Kept elements (known once packed; the keep bits are drawn if asked before)."""
        if self._count is None:
            self._count = int(self.bits().sum())
        return self._count

    def pack_into(self, span: torch.Tensor, out: torch.Tensor) -> int:
        dispatch.announce(self.spec, self.start, self.length)
        count = dispatch.compress(self.spec, span, out, offset=self.start)
        if count is None:  # not a CPU fp32 / bf16 span: select by keep bits
            values = span[self.bits(span.device)]
            count = values.numel()
            packed = out[:count].copy_(values)
            if self.spec.scale != 1.0:
                packed.mul_(self.spec.scale)
        self._count = count
        return count

    def unpack(self, span: torch.Tensor, values: torch.Tensor) -> None:
        if not dispatch.expand(self.spec, values, span, offset=self.start):
            span.zero_()
            span.masked_scatter_(self.bits(span.device), values)


def kept(spec: MaskSpec | None, start: int, length: int):
    """How span [start, start + length) of a parameter is packed under `spec` (None: the
    parameter is not masked at this step)."""
    if spec is None or (spec.rate == 0.0 and not spec.banded):
        return Whole(length)
    if spec.block > 1 and start % spec.block == 0 and length % spec.block == 0:
        return KeptBlocks(spec, start, length)
    return KeptElements(spec, start, length)


def spans_of(flat: torch.Tensor, described: list) -> list[tuple[torch.Tensor, object]]:
    """Cut a flat buffer into the consecutive spans the list of kept(...) describes."""
    pairs, position = [], 0
    for item in described:
        pairs.append((flat[position:position + item.length], item))
        position += item.length
    return pairs


def pack_spans(pairs: list[tuple[torch.Tensor, object]], out: torch.Tensor) -> int:
    """Pack every span's kept values one after another into `out` (room for all spans);
    returns how many."""
    position = 0
    for span, kept in pairs:
        position += kept.pack_into(span, out[position:])
    return position


def unpack_spans(pairs: list[tuple[torch.Tensor, object]], values: torch.Tensor) -> None:
    """The inverse of pack_spans, in place; dropped elements become 0."""
    position = 0
    for span, kept in pairs:
        kept.unpack(span, values[position:position + kept.count])
        position += kept.count


def compact_reduce_scatter(output: torch.Tensor, rows: torch.Tensor,
                           kept_rows: list[list], group, op=dist.ReduceOp.SUM,
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
