"""Offline rewards on generated media, and how latents become media.

Media are float tensors in ``[0, 1]``: ``(b, 3, H, W)`` images or ``(b, 3, F, H, W)`` videos. The tiny test
transformers work in pixel space (3 channels, no VAE), so their media are their latents mapped from ``[-1, 1]``;
real checkpoints decode through their VAE (not wired yet).

User rewards keep the text API's shape: ``worker.reward.reward_function=file.py:fn`` with ``reward_type=batch``
receives ``[{"media": tensor, "prompt": str, "metadata": dict}, ...]`` and returns score dicts with ``overall``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["brightness_score", "colour_score", "pixel_space_media"]


def pixel_space_media(latents: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` pixel-space latents -> ``[0, 1]`` media (values outside are clipped)."""
    return ((latents.float().clamp(-1, 1) + 1) / 2).detach()


def colour_score(media: torch.Tensor, target: Sequence[float]) -> torch.Tensor:
    """``1 - mean |pixel - target|`` per sample, over pixels and the 3 channels: 1 for a flat image of ``target``."""
    colour = torch.tensor(list(target), dtype=media.dtype, device=media.device).view(1, 3, *([1] * (media.dim() - 2)))
    return 1 - (media[:, :3] - colour).abs().flatten(1).mean(1)


def brightness_score(media: torch.Tensor) -> torch.Tensor:
    """Mean intensity per sample, in ``[0, 1]``."""
    return media[:, :3].flatten(1).mean(1)
