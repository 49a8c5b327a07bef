"""Whether torch's own flash-attention kernel serves a call here.

Three paths call it directly, each with a fallback of plain SDPA calls: the towers' chunked attention
(``models/vision_attention.py``), the rollout's decode attention over a prompt's pieces
(``workers/rollout/split_attention.py``) and the training attention's packed segments (``mrsp/varlen.py``). One
rule for all three: on CUDA, in 16 bits, with a head dim the kernel takes, without dropout, and on a GPU the kernel
was built for (probed once per device, before any CUDA graph capture).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["takes_flash_kernel"]

# What torch's flash kernel computes: 16-bit inputs, head dims a multiple of 8 up to 256.
_KERNEL_DTYPES = (torch.float16, torch.bfloat16)
_KERNEL_HEAD_DIM_STEP = 8
_KERNEL_MAX_HEAD_DIM = 256


def takes_flash_kernel(device: torch.device, dtype: torch.dtype, head_dim: int, dropout: float = 0.0) -> bool:
    """Whether a call on ``device`` in ``dtype`` with ``head_dim`` goes to the flash kernel: on CUDA, in 16 bits, a
    head dim the kernel takes, without dropout (the towers' varlen call has none; the fallbacks apply it), and on a
    GPU the kernel was built for (:func:`_kernel_runs`; a pre-Ampere card has none)."""
    return (device.type == "cuda" and dtype in _KERNEL_DTYPES and head_dim % _KERNEL_HEAD_DIM_STEP == 0
            and head_dim <= _KERNEL_MAX_HEAD_DIM and dropout == 0.0 and _kernel_runs(device))


@functools.lru_cache(maxsize=None)
def _kernel_runs(device: torch.device) -> bool:
    """One tiny call of the flash kernel on ``device``, once per device: False where the build or the GPU lacks it,
    so the caller takes its fallback instead of failing mid-pass."""
    try:
        probe = torch.zeros(2, 1, 8, dtype=torch.bfloat16, device=device)
        cu = torch.tensor([0, 2], dtype=torch.int32, device=device)
        torch.ops.aten._flash_attention_forward(probe, probe, probe, cu, cu, 2, 2, 0.0, False, False, scale=1.0)
        return True
    except (RuntimeError, NotImplementedError, TypeError):
        return False
