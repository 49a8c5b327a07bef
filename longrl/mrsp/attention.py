"""Ulysses sequence-parallel attention, plugged into transformers' attention interface as ``longrl_mrsp``.

Each rank of an SP group holds a contiguous shard of the sequence for all heads. An all-to-all trades that for
the whole sequence on ``1 / sp`` of the heads, attention runs locally, and a second all-to-all trades back. Only
the attention kernel changes; projections, rotary embeddings (computed from the full-sequence position ids the
caller sharded) and MLPs run unchanged on the local shard.

Masking is by segments, not by a dense mask: every row of the layout is a list of contiguous causal segments (a
left-padded prompt followed by its right-padded response is one segment; a packed row holds one segment per
sample), so no ``S x S`` mask is ever built (a long video prompt has tens of thousands of positions) and positions
outside every segment (padding) get a zero output that nothing reads.

Shared prefixes (the n rollouts of one prompt): a *branch* segment ``(row, start, end, prefix_start, prefix_end)``
reads a prefix span too. Its queries attend to every key of ``[prefix_start, prefix_end)`` and causally to
``[start, query]``: keys ``cat(prefix, own)`` under a causal mask aligned to the lower right (query ``i`` reads keys
``[0, prefix + i]``), so the prompt is computed once while each response sees exactly what it sees in its own
unshared row.

The segments are the sequences of one variable-length causal call (:mod:`longrl.mrsp.varlen`): one flash kernel per
layer on CUDA, SDPA per segment with a lower-right bias object elsewhere. GQA: the kernels read each key/value head
for its group of query heads, so neither the sequence's keys nor a branch's copy of its prefix is expanded to every
query head. With fewer key/value heads than SP ranks, key/value heads are repeated just enough to split evenly (each
query head still reads the key/value head it reads without SP).

The layout travels as the ``mrsp_layout`` keyword of the model's forward, which transformers hands down to the
attention function; gradient checkpointing stores it with the layer's inputs, so recomputation sees it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from transformers import AttentionInterface, PreTrainedModel

from longrl.mrsp.collectives import all_to_all
from longrl.mrsp.varlen import segments_attention

__all__ = ["ATTENTION_NAME", "AttentionLayout", "kv_head_repeat", "use_mrsp_attention"]

ATTENTION_NAME = "longrl_mrsp"


@dataclass(frozen=True)
class AttentionLayout:
    """Segments in full-sequence coordinates, and the SP group (``None``: no SP).

    ``(row, start, end)``: causal over ``[start, end)``. ``(row, start, end, prefix_start, prefix_end)``: a branch,
    causal over ``[start, end)`` after reading all of ``[prefix_start, prefix_end)`` (a span before ``start``).
    """

    segments: tuple[tuple[int, ...], ...]
    group: dist.ProcessGroup | None = field(default=None, compare=False)


def kv_head_repeat(query_heads: int, kv_heads: int, sp_size: int) -> int:
    """How many times to repeat each key/value head so both head counts split over ``sp_size`` ranks."""
    if query_heads % sp_size:
        raise ValueError(f"{query_heads} attention heads do not split over ulysses_size={sp_size}; "
                         f"use a ulysses_size that divides the head count")
    repeat = sp_size // math.gcd(kv_heads, sp_size)
    if (query_heads // kv_heads) % repeat:
        raise ValueError(f"{kv_heads} key/value heads ({query_heads} query heads) cannot be spread over "
                         f"ulysses_size={sp_size} ranks")
    return repeat


def _mrsp_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    mrsp_layout: AttentionLayout | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """``(b, heads, s_local, d)`` query/key/value -> ``(b, s_local, heads, d)`` output (transformers' contract)."""
    if mrsp_layout is None:
        raise RuntimeError(f"attention implementation {ATTENTION_NAME!r} needs the forward's mrsp_layout keyword; "
                           "call the model through longrl.mrsp.prefill")
    group = mrsp_layout.group
    sp_size = dist.get_world_size(group) if group is not None else 1
    repeat = kv_head_repeat(query.shape[1], key.shape[1], sp_size)
    if repeat > 1:
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    query, key, value = (all_to_all(x, group, scatter_dim=1, gather_dim=2) for x in (query, key, value))
    out = segments_attention(query, key, value, mrsp_layout.segments, scaling, dropout if module.training else 0.0)
    out = all_to_all(out.transpose(1, 2), group, scatter_dim=2, gather_dim=1)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, _mrsp_attention)


def use_mrsp_attention(model: PreTrainedModel) -> None:
    """Route the language model's attention (not the vision tower's) through MR-SP; every later forward of ``model``
    must then pass ``mrsp_layout``. Set once at load, since gradient checkpointing re-runs attention in backward."""
    model.config.get_text_config()._attn_implementation = ATTENTION_NAME
