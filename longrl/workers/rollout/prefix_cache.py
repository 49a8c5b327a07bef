"""One key/value cache per prompt for its ``n`` samples, as an attention implementation of transformers'.

Decoding ``n`` samples from a cache repeated ``n`` times reads the prompt's keys and values ``n`` times per token
(and grouped-query attention expands them again to every query head): for a long video prompt that traffic is the
rollout. Here each prompt's keys and values are stored once, followed by ``n`` slots of ``max_new_tokens`` columns,
one per sample, in a buffer per layer. A decode step folds the ``n`` samples' query heads onto the key/value heads
they read (sample ``j``'s head ``h`` becomes query row ``j * group + h % group`` of key/value head ``h // group``), so
the buffer is read once per step for all of them:

    scores = folded queries @ keys^T        one batched matmul over the whole buffer, float32 (float64 for float64)
    scores += mask                          left padding of the prompt; each sample's own slot up to this token
    probs  = softmax(scores)                over the buffer, in that precision
    out    = sum over key chunks of probs @ values

The softmax is over exactly the keys the sample sees in its own unshared row, so the result is that row's. A masked
scaled-dot-product-attention call over the buffer (what this replaced) dispatches to a kernel that spreads the key sweep
over a handful of thread blocks; the matmuls here tile the buffer's columns, and the weighted sum splits the keys into
chunks (split-K) whose partial sums are added in float32, so a long prompt keeps every multiprocessor busy.

A decode step keeps every shape fixed for the whole call: the step lives in a device tensor (:attr:`PrefixCache.step`)
and the slot columns and mask are derived from it on the device, so a step can be captured once in a CUDA graph and
replayed per token (:mod:`longrl.workers.rollout.decode`).

The prefill runs through the same function: each prompt's real columns (after its left padding) in one causal call,
their keys and values written to the buffer. No transformers cache object is involved; the state travels as the
``shared_decode`` keyword of the model's forward, which transformers hands down to the attention function.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel

__all__ = ["ATTENTION_NAME", "PrefixCache", "prefix_cache_attention"]

ATTENTION_NAME = "longrl_prefix_cache"
_TARGET_CHUNKS = 128  # key chunks of the split-K weighted sum: enough blocks for a GPU at any prompt length
_CHUNK_ALIGN = 64


class PrefixCache:
    """Buffers, mask and step of one rollout call: ``B`` prompts of width ``P`` (``prompt_mask``: their left padding),
    ``n`` samples each, up to ``max_new_tokens`` tokens per sample."""

    def __init__(self, prompt_mask: torch.Tensor, n: int, max_new_tokens: int, group: int, dtype: torch.dtype):
        device = prompt_mask.device
        self.batch, self.prompt_width = prompt_mask.shape
        self.n, self.slot_width, self.group = n, max_new_tokens, group
        self.starts = (prompt_mask == 0).sum(dim=1).tolist()  # first real column of each left-padded prompt
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        # Buffer columns: the prompt, then n slots, then unused columns up to a whole number of key chunks.
        self.chunk, chunks = _chunking(self.prompt_width + n * max_new_tokens)
        self.width = self.chunk * chunks
        self.score_dtype = accumulation_dtype(dtype)
        rows = n * group
        self.padding = max(self.starts)  # prompt columns that some prompt does not have
        self.pad_mask = None
        if self.padding:
            columns = torch.arange(self.padding, device=device)
            starts = torch.tensor(self.starts, device=device)
            self.pad_mask = torch.zeros(self.batch, 1, 1, self.padding, dtype=self.score_dtype, device=device)
            self.pad_mask.masked_fill_((columns[None, :] < starts[:, None])[:, None, None, :], -math.inf)
        # Over the columns after the prompt: which query row owns which slot, and each column's place in its slot.
        tail = torch.arange(self.width - self.prompt_width, device=device)
        owner = torch.arange(rows, device=device) // group
        self._own_slot = (tail // max_new_tokens)[None, :] == owner[:, None]  # (rows, tail); False past the slots
        self._slot_offset = (tail % max_new_tokens)[None, :]
        self.slot_mask = torch.full((1, 1, rows, self.width - self.prompt_width), -math.inf, dtype=self.score_dtype,
                                    device=device)
        self._slot_starts = self.prompt_width + torch.arange(n, device=device) * max_new_tokens
        self.step = torch.full((), -1, dtype=torch.long, device=device)  # slot column of the current token
        self.decoding = False  # False: the next forward is the prefill
        if device.type == "cuda":
            _bmm_out_dtype_works(device)  # probe outside any CUDA graph capture

    def advance(self) -> None:
        """Move to the next decode step on the device: each sample's next slot column opens for its own query rows."""
        self.decoding = True
        self.step += 1
        self.slot_mask.fill_(-math.inf)
        self.slot_mask[0, 0].masked_fill_(self._own_slot & (self._slot_offset <= self.step), 0.0)

    def prefill(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                scaling: float | None) -> torch.Tensor:
        """``(B, heads, P, d)`` queries over the prompts (causal, from each prompt's first real column); stores the
        layer's keys and values. Padding columns get a zero output that nothing reads."""
        for store, tensor in ((self.keys, key), (self.values, value)):
            buffer = tensor.new_zeros(*tensor.shape[:2], self.width, tensor.shape[-1])
            buffer[:, :, :self.prompt_width] = tensor
            store[layer] = buffer
        out = torch.zeros_like(query)
        for row, start in enumerate(self.starts):
            out[row, :, start:] = F.scaled_dot_product_attention(
                query[row:row + 1, :, start:], key[row:row + 1, :, start:], value[row:row + 1, :, start:],
                is_causal=True, scale=scaling, enable_gqa=True)[0]
        return out

    def decode(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scaling: float | None) -> torch.Tensor:
        """``(B * n, heads, 1, d)`` queries of the current step; writes the step's keys and values to their slots.
        The output is a ``(B * n, heads, 1, d)`` view of a contiguous ``(B * n, 1, heads, d)`` tensor."""
        batch, n, group, width = self.batch, self.n, self.group, self.width
        kv_heads, dim = key.shape[1], key.shape[-1]
        columns = self._slot_starts + self.step
        for store, tensor in ((self.keys, key), (self.values, value)):
            store[layer].index_copy_(2, columns, tensor.reshape(batch, n, kv_heads, dim).transpose(1, 2))
        scale = dim ** -0.5 if scaling is None else scaling
        folded = query.new_empty(batch * kv_heads, n * group, dim)
        torch.mul(query.reshape(batch, n, kv_heads, group, dim).permute(0, 2, 1, 3, 4), scale,
                  out=folded.view(batch, kv_heads, n, group, dim))
        keys = self.keys[layer].view(batch * kv_heads, width, dim)
        scores = matmul_accumulated(folded, keys.transpose(1, 2)).view(batch, kv_heads, n * group, width)
        if self.pad_mask is not None:
            scores[..., :self.padding] += self.pad_mask
        scores[..., self.prompt_width:] += self.slot_mask
        probs = torch.softmax(scores, dim=-1).view(batch * kv_heads, n * group, width)
        out = chunked_weighted_sum(probs, self.values[layer].view(batch * kv_heads, width, dim), self.chunk)
        # Unfolded and cast in one copy, into the (B * n, 1, heads, d) layout the attention's caller wants.
        unfolded = query.new_empty(batch * n, 1, kv_heads * group, dim)
        unfolded.view(batch, n, kv_heads, group, dim).copy_(out.view(batch, kv_heads, n, group, dim).permute(
            0, 2, 1, 3, 4))
        return unfolded.transpose(1, 2)


def _chunking(columns: int) -> tuple[int, int]:
    """``(chunk width, chunk count)`` covering ``columns``: at most :data:`_TARGET_CHUNKS` chunks of a multiple of
    :data:`_CHUNK_ALIGN` columns."""
    chunk = _CHUNK_ALIGN * max(1, math.ceil(columns / (_CHUNK_ALIGN * _TARGET_CHUNKS)))
    return chunk, math.ceil(columns / chunk)


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
    them to float32 where torch can)."""
    dtype = accumulation_dtype(a.dtype)
    if dtype == a.dtype:
        return torch.bmm(a, b)
    if a.device.type == "cuda" and _bmm_out_dtype_works(a.device):
        return torch.bmm(a, b, out_dtype=dtype)
    return torch.bmm(a.to(dtype), b.to(dtype))


def chunked_weighted_sum(probs: torch.Tensor, values: torch.Tensor, chunk: int) -> torch.Tensor:
    """``probs @ values`` for ``(N, M, W)`` weights and ``(N, W, d)`` values, ``W`` a multiple of ``chunk``: the keys
    split into ``W / chunk`` chunks multiplied in one batched call (weights cast to the values' dtype) and their partial
    sums added in :func:`accumulation_dtype`. One output tile per (batch, head) would leave a GPU idle."""
    rows, queries, width = probs.shape
    chunks = width // chunk
    staged = torch.empty(rows, chunks, queries, chunk, dtype=values.dtype, device=values.device)
    staged.copy_(probs.view(rows, queries, chunks, chunk).transpose(1, 2))
    partial = matmul_accumulated(staged.view(rows * chunks, queries, chunk),
                                 values.view(rows * chunks, chunk, values.shape[-1]))
    return partial.view(rows, chunks, queries, -1).sum(dim=1)


def prefix_cache_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           shared_decode: PrefixCache | None = None, **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention contract: ``(b, heads, s, d)`` in, ``(b, s, heads, d)`` out."""
    if shared_decode is None:
        raise RuntimeError(f"attention implementation {ATTENTION_NAME!r} needs the forward's shared_decode keyword")
    run = shared_decode.decode if shared_decode.decoding else shared_decode.prefill
    return run(module.layer_idx, query, key, value, scaling).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, prefix_cache_attention)


@contextmanager
def prefix_cache_attention_on(model: PreTrainedModel) -> Iterator[None]:
    """Route the language model's attention through :func:`prefix_cache_attention` inside the block."""
    config = model.config.get_text_config()
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
