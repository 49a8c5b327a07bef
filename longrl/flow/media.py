"""From the transformer's final latents to media in ``[0, 1]``, the form every reward function receives.

A released pipeline directory has ``vae/`` (SD3: ``AutoencoderKL``; Wan: ``AutoencoderKLWan``): latents are decoded
through it, frozen, after undoing the family's latent scaling (:meth:`FlowFamily.decode`), and the media size is the
latent size times the VAE's compression. A directory without ``vae/`` (the tiny test pipelines) works in pixel space:
the transformer has 3 channels and its latents in ``[-1, 1]`` are the media, which keeps CPU tests fast while every
other part of the path is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from longrl.flow.family import FlowFamily

__all__ = ["MediaDecoder", "to_unit_range"]


def to_unit_range(media: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` media -> float32 ``[0, 1]`` (values outside are clipped)."""
    return ((media.detach().float().clamp(-1, 1) + 1) / 2)


class MediaDecoder:
    """The frozen VAE of ``model_dir`` (or pixel space without one) for ``flow``'s transformer ``transformer``."""

    def __init__(self, flow: FlowFamily, model_dir: str | Path, transformer: torch.nn.Module, device: torch.device,
                 dtype: torch.dtype = torch.float32):
        self.flow, self.vae = flow, None
        vae_dir = Path(model_dir) / "vae"
        if vae_dir.is_dir():
            self.vae = flow.vae_class.from_pretrained(str(vae_dir), torch_dtype=dtype).requires_grad_(False).eval()
            self.vae.to(device)
        elif transformer.config.in_channels != 3:
            raise ValueError(f"{model_dir} has no vae/ and its transformer has {transformer.config.in_channels} "
                             "input channels: pixel-space generation needs 3 (add the pipeline's vae/ directory)")

    def latent_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(frames, height, width) of the latents of media of this size."""
        if self.vae is None:
            return frames, height, width
        return self.flow.latent_size(self.vae, frames, height, width)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """Media in ``[0, 1]``: ``(b, 3, H, W)`` images or ``(b, 3, F, H, W)`` videos."""
        return to_unit_range(latents if self.vae is None else self.flow.decode(self.vae, latents))
