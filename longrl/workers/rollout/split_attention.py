"""A few query rows per prompt attending to that prompt's long key sequence, the keys split into pieces whose partial
results are merged by their log-sum-exp (flash-decoding).

A decode step's queries are a handful of rows per key/value head (the ``n`` samples' query heads folded onto the head
they read) against tens of thousands of prompt keys. One attention call over the whole sequence gives a GPU one
thread block per (prompt, head): two blocks sweep 65k keys while the rest of the chip idles. Here each prompt's keys
are cut into ``S`` pieces, each (prompt, piece, head) is one sequence of a variable-length flash-attention call that
returns its output and its log-sum-exp, and the pieces are merged exactly:

    lse   = logsumexp over pieces of lse_piece
    out   = sum over pieces of exp(lse_piece - lse) * out_piece

which is the attention over the whole sequence (softmax is a ratio of sums, split over the keys). The flash kernel runs
on CUDA for 16-bit inputs; elsewhere (a CPU, float32/float64 tests) the same pieces go through a reference that
computes each piece's scores, log-sum-exp and weighted sum with plain matmuls in :func:`accumulation_dtype`, so the
split and the merge are the same code on both.

The keys of ``B`` prompts are stored one prompt after another as ``(T, kv_heads, d)`` rows (each prompt's real columns
only: a left-padded prompt's padding is never stored, so no mask is needed). Queries come as ``(B, M, kv_heads, d)``;
:func:`attend_pieces` also takes ``(B, r1, r2, kv_heads, d)`` whose ``r1 * r2`` rows, in that order, are the ``M`` (a
decode step's samples and the query heads of each, a strided view), copied once into the kernel's layout.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from longrl.flash_kernel import takes_flash_kernel

__all__ = ["KeySplits", "accumulation_dtype", "attend_pieces", "flash_available", "matmul_accumulated",
           "merge_pieces", "plan_splits", "split_attention"]

# A piece has at least this many keys (a thread block's sweep worth its launch and its share of the merge) ...
_SHORTEST_PIECE = 256
# ... and there are enough pieces for this many thread blocks per multiprocessor.
_BLOCKS_PER_SM = 2


@dataclass(frozen=True)
class KeySplits:
    """``count`` pieces per prompt over keys stored prompt after prompt: piece ``s`` of prompt ``b`` is key rows
    ``bounds[b * count + s] .. bounds[b * count + s + 1]``; ``queries`` rows per prompt attend to each."""

    count: int
    bounds: tuple[int, ...]
    queries: int
    cu_keys: torch.Tensor  # int32 (B * count + 1,), the bounds on the device (the flash kernel's cu_seqlens_k)
    cu_queries: torch.Tensor  # int32 (B * count + 1,), multiples of ``queries``
    longest: int  # keys of the longest piece


def plan_splits(lengths: list[int], queries: int, kv_heads: int, device: torch.device,
                count: int | None = None) -> KeySplits:
    """Pieces for prompts of ``lengths`` keys: ``count`` per prompt, or (``None``) one per prompt off CUDA and on CUDA
    enough for :data:`_BLOCKS_PER_SM` blocks per multiprocessor, none shorter than :data:`_SHORTEST_PIECE` keys where
    the prompts allow. Never more pieces than the shortest prompt has keys (an empty piece has no log-sum-exp)."""
    if count is None:
        count = 1
        if device.type == "cuda":
            blocks = _BLOCKS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
            count = max(1, min(math.ceil(blocks / (len(lengths) * kv_heads)),
                               math.ceil(max(lengths) / _SHORTEST_PIECE)))
    count = max(1, min(count, min(lengths)))
    bounds = [0]
    for length in lengths:
        base, extra = divmod(length, count)
        for piece in range(count):
            bounds.append(bounds[-1] + base + (piece < extra))
    pieces = len(bounds) - 1
    return KeySplits(count=count, bounds=tuple(bounds), queries=queries,
                     cu_keys=torch.tensor(bounds, dtype=torch.int32, device=device),
                     cu_queries=torch.arange(0, (pieces + 1) * queries, queries, dtype=torch.int32, device=device),
                     longest=max(b - a for a, b in zip(bounds, bounds[1:])))


def split_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, splits: KeySplits, scale: float,
                    use_flash: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``(B, M, kv, d)`` queries over their prompts' ``(T, kv, d)`` keys and values: ``(B, M, kv, d)``
    outputs and ``(B, M, kv)`` log-sum-exps of the scaled scores, both in :func:`accumulation_dtype`."""
    out, lse = attend_pieces(query, keys, values, splits, scale, use_flash)
    return merge_pieces(out, lse, query.shape[0], splits.count, query.dtype)


def attend_pieces(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, splits: KeySplits, scale: float,
                  use_flash: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Each piece's attention, unmerged: ``(B * S * M, kv, d)`` outputs and ``(B * S * M, kv)`` log-sum-exps, piece
    after piece. The part of :func:`split_attention` whose shapes depend on the prompts' lengths. ``query``: ``(B, M,
    kv, d)`` or ``(B, r1, r2, kv, d)`` with ``M = r1 * r2`` rows."""
    if use_flash:
        return _flash_pieces(query, keys, values, splits, scale)
    return _reference_pieces(query.reshape(query.shape[0], -1, *query.shape[-2:]), keys, values, splits, scale)


def merge_pieces(out: torch.Tensor, lse: torch.Tensor, batch: int, count: int, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend_pieces`' results for ``batch`` prompts of ``count`` pieces merged by their log-sum-exp:
    ``(B, M, kv, d)`` outputs and ``(B, M, kv)`` log-sum-exps in the :func:`accumulation_dtype` of ``dtype``, the
    queries' type. Its shapes do not depend on the prompts' lengths (a compiled decode step compiles it once)."""
    out = out.view(batch, count, -1, *out.shape[1:])
    lse = lse.view(batch, count, -1, lse.shape[-1])
    if count == 1:
        return out[:, 0].to(accumulation_dtype(dtype)), lse[:, 0]
    total = torch.logsumexp(lse, dim=1)
    weights = torch.exp(lse - total[:, None])
    merged = (weights[..., None] * out.to(weights.dtype)).sum(dim=1)
    return merged.to(accumulation_dtype(dtype)), total


def _flash_pieces(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, splits: KeySplits,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (prompt, piece) as one sequence of a variable-length flash-attention call (the prompt's query rows copied
    once per piece, in one copy whatever the query's strides): ``(B * S * M, kv, d)`` outputs in the query dtype,
    ``(B * S * M, kv)`` float32 log-sum-exps."""
    batch, kv_heads, dim = query.shape[0], query.shape[-2], query.shape[-1]
    rows = math.prod(query.shape[1:-2])
    repeated = query[:, None].expand(batch, splits.count, *query.shape[1:]).reshape(-1, kv_heads, dim)
    out, lse = torch.ops.aten._flash_attention_forward(
        repeated, keys, values, splits.cu_queries, splits.cu_keys, rows, splits.longest, 0.0, False, False,
        scale=scale)[:2]
    pieces = batch * splits.count
    if lse.dim() == 3:  # (sequences, heads, longest query) where a kernel keeps the padded layout
        lse = lse.transpose(1, 2)[:, :rows].reshape(pieces * rows, kv_heads)
    else:  # (heads, total query rows)
        lse = lse.transpose(0, 1)
    return out, lse


def _reference_pieces(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, splits: KeySplits,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The flash call's pieces with matmuls: scores, log-sum-exp and softmax-weighted sum in
    :func:`accumulation_dtype`, piece by piece."""
    batch, rows, kv_heads, dim = query.shape
    dtype = accumulation_dtype(query.dtype)
    outs, lses = [], []
    for piece, (start, end) in enumerate(zip(splits.bounds, splits.bounds[1:])):
        heads_first = query[piece // splits.count].transpose(0, 1)  # (kv, M, d)
        scores = matmul_accumulated(heads_first, keys[start:end].permute(1, 2, 0)) * scale  # (kv, M, L)
        lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - lse[..., None])
        outs.append(torch.bmm(probs, values[start:end].transpose(0, 1).to(dtype)).transpose(0, 1))  # (M, kv, d)
        lses.append(lse.transpose(0, 1))  # (M, kv)
    return torch.stack(outs).flatten(0, 1), torch.stack(lses).flatten(0, 1)  # piece after piece, like the flash call


def flash_available(query: torch.Tensor) -> bool:
    """Whether :func:`split_attention` can use the flash kernel for queries like ``query``
    (:func:`~longrl.flash_kernel.takes_flash_kernel`, which also probes that the kernel runs on this GPU), asked at
    each rollout call's prefill, before any CUDA graph capture."""
    return takes_flash_kernel(query.device, query.dtype, query.shape[-1])


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores and sums of an attention in ``dtype``: float32 for 16-bit types, else the type itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@functools.lru_cache(maxsize=None)
def _bmm_out_dtype_works(device: torch.device) -> bool:
    """Whether this torch multiplies 16-bit matrices into float32 directly (``torch.bmm(..., out_dtype=)``, CUDA)."""
    try:
        a = torch.ones(1, 2, 2, dtype=torch.bfloat16, device=device)
        return torch.bmm(a, a, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def matmul_accumulated(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``a @ b`` in :func:`accumulation_dtype` (16-bit inputs are multiplied into float32, without copying
    them to float32 where torch can). Traceable: a compiled caller keeps it in its graph (inductor lowers the
    float32-out bmm on CUDA; the probe runs only eagerly)."""
    dtype = accumulation_dtype(a.dtype)
    if dtype == a.dtype:
        return torch.bmm(a, b)
    if a.device.type == "cuda" and (torch.compiler.is_compiling() or _bmm_out_dtype_works(a.device)):
        return torch.bmm(a, b, out_dtype=dtype)
    return torch.bmm(a.to(dtype), b.to(dtype))
