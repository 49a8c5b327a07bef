"""One key/value cache per prompt for its ``n`` samples, as an attention implementation of transformers'.

Decoding ``n`` samples from a cache repeated ``n`` times reads the prompt's keys and values ``n`` times per token
(and grouped-query attention expands them again to every query head): for a long video prompt that traffic is the
rollout. Here each prompt's keys and values are stored once, followed by ``n`` slots of ``max_new_tokens`` columns,
one per sample, in a buffer per layer. A decode step folds the ``n`` samples' query heads onto the key/value heads
they read (sample ``j``'s head ``h`` becomes query row ``j * group + h % group`` of key/value head ``h // group``) and
runs one attention call per prompt over the buffer, with an additive mask that opens the prompt's real columns and,
for each sample, its own slot up to the current token. The softmax is over exactly the keys the sample sees in its
own unshared row, so the result is that row's.

The prefill runs through the same function: each prompt's real columns (after its left padding) in one causal call,
their keys and values written to the buffer. No transformers cache object is involved; the state travels as the
``shared_decode`` keyword of the model's forward, which transformers hands down to the attention function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel

__all__ = ["ATTENTION_NAME", "PrefixCache", "prefix_cache_attention"]

ATTENTION_NAME = "longrl_prefix_cache"


class PrefixCache:
    """Buffers, mask and step of one rollout call: ``B`` prompts of width ``P`` (``prompt_mask``: their left padding),
    ``n`` samples each, up to ``max_new_tokens`` tokens per sample."""

    def __init__(self, prompt_mask: torch.Tensor, n: int, max_new_tokens: int, group: int, dtype: torch.dtype):
        self.batch, self.prompt_width = prompt_mask.shape
        self.n, self.slot_width, self.group = n, max_new_tokens, group
        self.starts = (prompt_mask == 0).sum(dim=1).tolist()  # first real column of each left-padded prompt
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.width = self.prompt_width + n * max_new_tokens  # buffer columns: the prompt, then n slots
        blocked = torch.finfo(dtype).min
        mask = torch.full((self.batch, 1, n * group, self.width), blocked, dtype=dtype, device=prompt_mask.device)
        mask[..., :self.prompt_width].masked_fill_(prompt_mask.bool()[:, None, None, :], 0.0)
        self.mask = mask
        self.step = -1  # -1: the prefill

    def advance(self) -> None:
        """Move to the next decode step: each sample's next slot column opens for its own query rows."""
        self.step += 1
        rows = torch.arange(self.n * self.group, device=self.mask.device)
        self.mask[:, 0, rows, self._columns().repeat_interleave(self.group)] = 0.0

    def _columns(self) -> torch.Tensor:
        """Buffer column of the current step's token of each sample."""
        return self.prompt_width + torch.arange(self.n, device=self.mask.device) * self.slot_width + self.step

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
        """``(B * n, heads, 1, d)`` queries of the current step; writes the step's keys and values to their slots."""
        batch, n, group = self.batch, self.n, self.group
        kv_heads, dim = key.shape[1], key.shape[-1]
        columns = self._columns()
        for store, tensor in ((self.keys, key), (self.values, value)):
            store[layer][:, :, columns] = tensor.view(batch, n, kv_heads, dim).transpose(1, 2)
        folded = query.view(batch, n, kv_heads, group, dim).permute(0, 2, 1, 3, 4).reshape(batch, kv_heads, n * group, dim)
        out = F.scaled_dot_product_attention(folded, self.keys[layer], self.values[layer], attn_mask=self.mask,
                                             scale=scaling)
        return out.view(batch, kv_heads, n, group, dim).permute(0, 2, 1, 3, 4).reshape(batch * n, kv_heads * group, 1, dim)


def prefix_cache_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           shared_decode: PrefixCache | None = None, **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention contract: ``(b, heads, s, d)`` in, ``(b, s, heads, d)`` out."""
    if shared_decode is None:
        raise RuntimeError(f"attention implementation {ATTENTION_NAME!r} needs the forward's shared_decode keyword")
    run = shared_decode.prefill if shared_decode.step < 0 else shared_decode.decode
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
