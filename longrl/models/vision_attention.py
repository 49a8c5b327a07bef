"""The towers' attention within ``cu_seqlens`` chunks as one varlen kernel call per layer on CUDA.

The Qwen-VL vision towers (and Qwen2.5-Omni's audio tower) attend within chunks, a frame or a window of one, given
as cumulative lengths ``cu_seqlens``. transformers' tower attention makes one varlen call per layer when the config's
implementation names flash (``is_flash_attention_requested``: "flash" in the name) and otherwise loops in Python,
one SDPA call per chunk: at 512 frames of 448 px the Qwen2.5-VL-3B tower has ~4096 windows in each of its 28 window
layers, ~115k kernel launches a pass, seconds of launch overhead alone. The flash-attn package is not a dependency,
so the implementation registered here as :data:`ATTENTION_NAME` ("flash" in the name, to take the cu_seqlens branch)
calls torch's own :func:`~torch.nn.attention.varlen.varlen_attn` where its kernel applies
(:func:`takes_varlen_kernel`) and otherwise runs the non-flash branch's loop over transformers' own "sdpa"
function, so a CPU run (every test) is bit-identical to stock "sdpa".

:func:`use_varlen_attention` puts it on the sub-configs an adapter names in ``varlen_attention_configs``, only where
they hold "sdpa": an eager or flash choice stays, and the text model's attention is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from longrl.flash_kernel import takes_flash_kernel

try:  # a prototype API of torch (2.9+); without it every call takes the loop
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None

__all__ = ["ATTENTION_NAME", "takes_varlen_kernel", "use_varlen_attention", "varlen_attention"]

ATTENTION_NAME = "longrl_varlen_flash"


def takes_varlen_kernel(device: torch.device, dtype: torch.dtype, head_dim: int, dropout: float = 0.0) -> bool:
    """Whether a call goes to the varlen flash kernel: torch has ``varlen_attn`` and its kernel serves the call
    (:func:`~longrl.flash_kernel.takes_flash_kernel`)."""
    return varlen_attn is not None and takes_flash_kernel(device, dtype, head_dim, dropout)


def varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, *, cu_seq_lens_q: torch.Tensor,
                     cu_seq_lens_k: torch.Tensor, max_length_q: int, max_length_k: int, scaling: float | None = None,
                     dropout: float = 0.0, is_causal: bool = False, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention contract as the towers' cu_seqlens branch calls it: ``(1, heads, total, d)`` in,
    ``(1, total, heads, d)`` out, each chunk of ``cu_seq_lens_q`` attending to itself only."""
    if attention_mask is not None or is_causal:
        raise ValueError(f"attention implementation {ATTENTION_NAME!r} serves full attention within cu_seqlens chunks: "
                         "it takes neither a mask nor causal attention")
    if not takes_varlen_kernel(query.device, query.dtype, query.shape[-1], dropout):
        return _chunked_sdpa(module, query, key, value, cu_seq_lens_q, scaling=scaling, dropout=dropout, **kwargs)
    packed = (x[0].transpose(0, 1) for x in (query, key, value))  # (total, heads, d) views
    cu_q, cu_k = (lengths.to(query.device, torch.int32) for lengths in (cu_seq_lens_q, cu_seq_lens_k))
    out = varlen_attn(*packed, cu_q, cu_k, int(max_length_q), int(max_length_k), scale=scaling)
    return out.unsqueeze(0), None


def _chunked_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  cu_seqlens: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The towers' non-flash branch as transformers writes it: transformers' "sdpa" on each chunk, the outputs
    concatenated along the sequence."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    chunks = zip(*(torch.split(x, lengths, dim=2) for x in (query, key, value)))
    outputs = [sdpa(module, q, k, v, attention_mask=None, is_causal=False, **kwargs)[0] for q, k, v in chunks]
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(ATTENTION_NAME, varlen_attention)


def use_varlen_attention(config: PreTrainedConfig, sub_configs: Iterable[str]) -> None:
    """Route the attention of ``config``'s ``sub_configs`` (attribute names, e.g. ``vision_config``) through
    :func:`varlen_attention` where it is "sdpa", transformers' default. Set on the config object the tower modules
    share and read at each forward, so a model already built (or built on the meta device) takes it."""
    for name in sub_configs:
        sub_config = getattr(config, name)
        if sub_config._attn_implementation == "sdpa":
            sub_config._attn_implementation = ATTENTION_NAME
