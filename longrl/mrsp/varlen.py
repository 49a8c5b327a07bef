"""An attention layout's segments (:mod:`longrl.mrsp.attention`) as the sequences of one variable-length causal call.

Each segment becomes one sequence: its queries are the segment's positions, its keys a branch's prefix span then the
segment's own positions, and the causal mask is aligned to the lower right (query ``i`` of a sequence with ``L``
queries and ``K`` keys reads keys ``[0, K - L + i]``). With as many keys as queries that is plain causal attention;
for a branch it is what the response sees in its own unshared row: the whole prompt, then its tokens up to itself.

On CUDA in 16 bits (:func:`~longrl.flash_kernel.takes_flash_kernel`) all sequences go through one flash-attention
kernel per layer, forward and backward, instead of one SDPA call per segment: a packed micro-batch of many short
samples, or a prompt with its ``n`` branches, costs one launch. Elsewhere the same packed sequences go through SDPA
one by one with the same lower-right mask (every CPU test), so the packing is the same code on both. The queries,
keys and values are gathered by position (a branch's prefix once per branch, as its keys) and the outputs scattered
back; positions in no segment (padding) get a zero output that nothing reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from longrl.flash_kernel import takes_flash_kernel

__all__ = ["PackedSegments", "pack_segments", "segments_attention"]


@dataclass(frozen=True)
class PackedSegments:
    """Where each packed query and key comes from (row and column of the ``(b, s)`` sequence), and the sequences'
    bounds: sequence ``j`` is packed queries ``query_bounds[j] .. query_bounds[j + 1]`` over packed keys
    ``key_bounds[j] .. key_bounds[j + 1]``."""

    query_rows: torch.Tensor  # (total queries,) long
    query_columns: torch.Tensor
    key_rows: torch.Tensor  # (total keys,) long
    key_columns: torch.Tensor
    query_bounds: tuple[int, ...]
    key_bounds: tuple[int, ...]
    cu_queries: torch.Tensor  # int32, the bounds on the device (the kernel's cu_seqlens)
    cu_keys: torch.Tensor
    longest_queries: int
    longest_keys: int


@functools.lru_cache(maxsize=16)  # every layer of a pass (and its recomputation and backward) packs the same layout
def pack_segments(segments: tuple[tuple[int, ...], ...], device: torch.device) -> PackedSegments:
    """The packing of ``segments``: ``(row, start, end)`` causal spans and ``(row, start, end, prefix_start,
    prefix_end)`` branches, in :class:`~longrl.mrsp.attention.AttentionLayout`'s coordinates."""
    query_rows, query_columns, key_rows, key_columns = [], [], [], []
    query_bounds, key_bounds = [0], [0]
    for segment in segments:
        row, start, end = segment[:3]
        prefix = range(segment[3], segment[4]) if len(segment) == 5 else range(0)
        own = range(start, end)
        query_columns.extend(own)
        query_rows.extend([row] * len(own))
        key_columns.extend(prefix)
        key_columns.extend(own)
        key_rows.extend([row] * (len(prefix) + len(own)))
        query_bounds.append(query_bounds[-1] + len(own))
        key_bounds.append(key_bounds[-1] + len(prefix) + len(own))

    def longs(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    def ints(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int32, device=device)

    return PackedSegments(
        longs(query_rows), longs(query_columns), longs(key_rows), longs(key_columns), tuple(query_bounds),
        tuple(key_bounds), ints(query_bounds), ints(key_bounds),
        longest_queries=max((b - a for a, b in zip(query_bounds, query_bounds[1:])), default=0),
        longest_keys=max((b - a for a, b in zip(key_bounds, key_bounds[1:])), default=0))


def segments_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       segments: tuple[tuple[int, ...], ...], scale: float | None, dropout: float) -> torch.Tensor:
    """``(b, heads, s, d)`` queries and ``(b, kv_heads, s, d)`` keys and values (``kv_heads`` dividing ``heads``)
    attending within ``segments``: ``(b, s, heads, d)`` outputs, zero outside every segment."""
    batch, heads, width, dim = query.shape
    if not segments:
        return query.new_zeros(batch, width, heads, dim)
    packing = pack_segments(segments, query.device)
    by_position = [x.transpose(1, 2) for x in (query, key, value)]  # (b, s, heads, d) views
    packed_query = by_position[0][packing.query_rows, packing.query_columns]  # (total queries, heads, d)
    packed_key, packed_value = (x[packing.key_rows, packing.key_columns] for x in by_position[1:])
    if takes_flash_kernel(query.device, query.dtype, dim, dropout):
        packed = _flash_causal(packed_query, packed_key, packed_value, packing, scale)
    else:
        packed = _sequence_by_sequence(packed_query, packed_key, packed_value, packing, scale, dropout)
    out = query.new_zeros(batch, width, heads, dim)
    out[packing.query_rows, packing.query_columns] = packed
    return out


def _flash_causal(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, packing: PackedSegments,
                  scale: float | None) -> torch.Tensor:
    """Every sequence in one varlen flash call, causal (the kernel aligns it to the lower right; its backward is
    torch's): ``(total queries, heads, d)``."""
    return torch.ops.aten._flash_attention_forward(
        query, key, value, packing.cu_queries, packing.cu_keys, packing.longest_queries, packing.longest_keys, 0.0,
        True, False, scale=scale)[0]


def _sequence_by_sequence(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, packing: PackedSegments,
                          scale: float | None, dropout: float) -> torch.Tensor:
    """The flash call's sequences one SDPA call each, with the lower-right causal mask (a bias object: SDPA keeps its
    fused kernels): ``(total queries, heads, d)``."""
    gqa = query.shape[1] != key.shape[1]
    outputs = []
    for (q0, q1), (k0, k1) in zip(zip(packing.query_bounds, packing.query_bounds[1:]),
                                  zip(packing.key_bounds, packing.key_bounds[1:])):
        q, k, v = (x[a:b].transpose(0, 1)[None] for x, a, b in ((query, q0, q1), (key, k0, k1), (value, k0, k1)))
        outputs.append(F.scaled_dot_product_attention(
            q, k, v, attn_mask=causal_lower_right(q1 - q0, k1 - k0), scale=scale, dropout_p=dropout,
            enable_gqa=gqa)[0].transpose(0, 1))
    return torch.cat(outputs)
