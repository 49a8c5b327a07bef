"""One key/value cache per prompt for its ``n`` samples, as an attention implementation of transformers'.

Decoding ``n`` samples from a cache repeated ``n`` times reads the prompt's keys and values ``n`` times per token
(and grouped-query attention expands them again to every query head): for a long video prompt that traffic is the
rollout. Here each layer keeps two stores: the prompts' keys and values once (each prompt's real columns, one prompt
after another, ``(T, kv_heads, d)``), and ``n`` slots of ``max_new_tokens`` columns per prompt for the samples' own
tokens, ``(B, kv_heads, n, max_new_tokens, d)``. A decode step folds the ``n`` samples' query heads onto the
key/value heads they read (sample ``j``'s head ``h`` becomes query row ``j * group + h % group`` of key/value head
``h // group``) and attends in two parts merged by their log-sum-exp:

    prompt part   the folded rows over their prompt's keys, split into pieces (flash-decoding,
                  :mod:`longrl.workers.rollout.split_attention`): the prompt is read once per step for all samples
    own part      each sample's query heads over its own slot, columns up to this step (a batched matmul)
    merged        out = exp(lse_prompt - lse) * out_prompt + exp(lse_own - lse) * out_own,
                  lse = logaddexp(lse_prompt, lse_own)

The softmax is over exactly the keys the sample sees in its own unshared row, so the result is that row's.

A decode step keeps every shape fixed for the whole call: the step lives in a device tensor (:attr:`PrefixCache.step`)
and the slot mask is derived from it on the device, so a step can be captured once in a CUDA graph and replayed per
token (:mod:`longrl.workers.rollout.decode`). With compiled decoder layers, everything after the prompt part's kernel
(:func:`merge_step`) is compiled too: its shapes do not depend on the prompt length.

The prefill runs through the same function: each prompt's real columns (after its left padding) in one causal call,
their keys and values written to the prompt store. No transformers cache object is involved; the state travels as the
``shared_decode`` keyword of the model's forward, which transformers hands down to the attention function.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel

from longrl.workers.rollout.compiled_layers import CompiledOrEager
from longrl.workers.rollout.split_attention import (
    KeySplits,
    attend_pieces,
    flash_available,
    matmul_accumulated,
    merge_pieces,
    plan_splits,
)

__all__ = ["ATTENTION_NAME", "PrefixCache", "prefix_cache_attention"]

ATTENTION_NAME = "longrl_prefix_cache"


class PrefixCache:
    """Stores, mask and step of one rollout call: ``B`` prompts of width ``P`` (``prompt_mask``: their left padding),
    ``n`` samples each, up to ``max_new_tokens`` tokens per sample. ``pieces``: how many pieces each prompt's keys are
    split into (``None``: chosen for the device, see :func:`~longrl.workers.rollout.split_attention.plan_splits`);
    ``flash``: use the flash kernel for the prompt part (``None``: where it runs); ``compiled``: run the step's
    attention after the prompt part (:func:`merge_step`) through ``torch.compile``, as compiled decoder layers do."""

    def __init__(self, prompt_mask: torch.Tensor, n: int, max_new_tokens: int, group: int, dtype: torch.dtype,
                 pieces: int | None = None, flash: bool | None = None, compiled: bool = False):
        self.device = prompt_mask.device
        self.batch, self.prompt_width = prompt_mask.shape
        self.n, self.slot_width, self.group = n, max_new_tokens, group
        self.starts = (prompt_mask == 0).sum(dim=1).tolist()  # first real column of each left-padded prompt
        self.lengths = [self.prompt_width - start for start in self.starts]
        self.pieces, self.flash = pieces, flash
        self.splits: KeySplits | None = None  # planned at the first prefill, which knows the key/value heads
        self.prompt_keys: dict[int, torch.Tensor] = {}
        self.prompt_values: dict[int, torch.Tensor] = {}
        self.slot_keys: dict[int, torch.Tensor] = {}
        self.slot_values: dict[int, torch.Tensor] = {}
        self._columns = torch.arange(max_new_tokens, device=self.device)
        self.slot_mask = torch.zeros(max_new_tokens, dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                                     device=self.device)
        self.step = torch.full((), -1, dtype=torch.long, device=self.device)  # slot column of the current token
        self.decoding = False  # False: the next forward is the prefill
        self._merge_step: Callable[..., torch.Tensor] = _compiled_merge_step() if compiled else merge_step

    def advance(self) -> None:
        """Move to the next decode step on the device: each sample's next slot column opens for its own query rows."""
        self.decoding = True
        self.step += 1
        self.slot_mask.fill_(-math.inf)
        self.slot_mask.masked_fill_(self._columns <= self.step, 0.0)

    def prefill(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                scaling: float | None) -> torch.Tensor:
        """``(B, heads, P, d)`` queries over the prompts (causal, from each prompt's first real column); stores the
        layer's keys and values. Padding columns get a zero output that nothing reads."""
        batch, kv_heads, _, dim = key.shape
        if self.splits is None:  # first layer: the shapes are known; probed here, outside any graph capture
            self.splits = plan_splits(self.lengths, self.n * self.group, kv_heads, self.device, self.pieces)
            self.flash = flash_available(query) if self.flash is None else self.flash
        for store, tensor in ((self.prompt_keys, key), (self.prompt_values, value)):
            store[layer] = torch.cat([tensor[row, :, start:].transpose(0, 1) for row, start in enumerate(self.starts)])
        for store in (self.slot_keys, self.slot_values):
            store[layer] = key.new_zeros(batch, kv_heads, self.n, self.slot_width, dim)
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
        kv_heads, dim = key.shape[1], key.shape[-1]
        scale = dim ** -0.5 if scaling is None else scaling
        by_sample = query.reshape(self.batch, self.n, kv_heads, self.group, dim)
        prompt_out, prompt_lse = attend_pieces(by_sample.transpose(2, 3), self.prompt_keys[layer],
                                               self.prompt_values[layer], self.splits, scale, self.flash)
        return self._merge_step(prompt_out, prompt_lse, by_sample, key, value, self.step, self.slot_keys[layer],
                                self.slot_values[layer], self.slot_mask, self.splits.count, scale)


def merge_step(prompt_out: torch.Tensor, prompt_lse: torch.Tensor, by_sample: torch.Tensor, key: torch.Tensor,
               value: torch.Tensor, step: torch.Tensor, slot_keys: torch.Tensor, slot_values: torch.Tensor,
               slot_mask: torch.Tensor, count: int, scale: float) -> torch.Tensor:
    """The decode attention after the prompt pieces (:func:`~longrl.workers.rollout.split_attention.attend_pieces`):
    the step's ``(B * n, kv, 1, d)`` keys and values written to slot column ``step``, the pieces merged, each sample's
    ``(B, n, kv, group, d)`` query heads over its own slot, the two merged and unfolded into the ``(B * n, heads, 1,
    d)`` layout (a view of a contiguous ``(B * n, 1, heads, d)``) in the queries' type. Tensors whose shapes hold for
    every layer, step and prompt length: compiled once for the whole call, as one graph."""
    batch, n, kv_heads, group, dim = by_sample.shape
    for store, tensor in ((slot_keys, key), (slot_values, value)):
        store.index_copy_(3, step.view(1), tensor.view(batch, n, kv_heads, 1, dim).transpose(1, 2))
    prompt_out, prompt_lse = merge_pieces(prompt_out, prompt_lse, batch, count, by_sample.dtype)
    own_out, own_lse = own_slot_attention(by_sample, slot_keys, slot_values, slot_mask, scale)
    lse = torch.logaddexp(prompt_lse, own_lse)
    out = (torch.exp(prompt_lse - lse)[..., None] * prompt_out
           + torch.exp(own_lse - lse)[..., None] * own_out)  # (B, n * group, kv, d)
    # Unfolded and cast in one copy, into the (B * n, 1, heads, d) layout the attention's caller wants.
    unfolded = by_sample.new_empty(batch * n, 1, kv_heads * group, dim)
    unfolded.view(batch, n, kv_heads, group, dim).copy_(out.view(batch, n, group, kv_heads, dim).transpose(2, 3))
    return unfolded.transpose(1, 2)


def own_slot_attention(by_sample: torch.Tensor, slot_keys: torch.Tensor, slot_values: torch.Tensor,
                       slot_mask: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's ``(B, n, kv, group, d)`` query heads over its own slot's columns up to this step (``slot_mask``):
    ``(B, n * group, kv, d)`` outputs and ``(B, n * group, kv)`` log-sum-exps, like the prompt part's."""
    batch, n, kv_heads, group, dim = by_sample.shape
    rows, width = batch * kv_heads * n, slot_keys.shape[3]
    queries = by_sample.permute(0, 2, 1, 3, 4).reshape(rows, group, dim)
    scores = matmul_accumulated(queries, slot_keys.view(rows, width, dim).transpose(1, 2)) * scale + slot_mask
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None])
    values = slot_values.view(rows, width, dim)
    out = matmul_accumulated(probs.to(values.dtype), values)  # (rows, group, d)
    out = out.view(batch, kv_heads, n, group, dim).permute(0, 2, 3, 1, 4).reshape(batch, n * group, kv_heads, dim)
    lse = lse.view(batch, kv_heads, n, group).permute(0, 2, 3, 1).reshape(batch, n * group, kv_heads)
    return out, lse


@functools.cache
def _compiled_merge_step() -> Callable[..., torch.Tensor]:
    """:func:`merge_step` through ``torch.compile``, built at first use (one compilation serves every cache)."""
    return CompiledOrEager(merge_step, "the decode attention's merge")


@torch.compiler.disable  # the compiled decode layers' graphs stay free of the prompt length (compiled_layers.py)
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
