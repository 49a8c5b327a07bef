"""Flow-matching generators through ``diffusers``: Stable Diffusion 3 (images) and Wan (videos), one class each.

Each says how to build a tiny random transformer locally, how to load one, what shape its latents have, how to
ask it for the velocity at a noise level (``timestep = 1000 * sigma``, the scale both were trained with), and how its
VAE (``vae/`` of a diffusers pipeline directory) maps media sizes to latent sizes and latents back to media. Text
conditioning arrives already encoded (:class:`TextConditioning`, see :mod:`longrl.flow.text`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import AutoencoderKL, AutoencoderKLWan, SD3Transformer2DModel, WanTransformer3DModel
from safetensors.torch import load_file

__all__ = ["FLOW_FAMILIES", "FlowFamily", "SD3Family", "TextConditioning", "WanFamily", "family_of"]


@dataclass
class TextConditioning:
    tokens: torch.Tensor  # (b, L, text_dim): the text encoder's sequence output
    pooled: torch.Tensor | None = None  # (b, pooled_dim): SD3's pooled CLIP embedding


class FlowFamily(ABC):
    family: ClassVar[str]
    model_class: ClassVar[type[torch.nn.Module]]
    vae_class: ClassVar[type[torch.nn.Module]]

    @abstractmethod
    def tiny_config(self) -> dict:
        """Keyword arguments of a tiny transformer of this family."""

    @abstractmethod
    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        """The latents of ``batch`` samples of ``frames`` x ``height`` x ``width`` latent pixels."""

    @abstractmethod
    def velocity(self, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                 text: TextConditioning) -> torch.Tensor:
        """The predicted velocity ``eps - x0`` at noise level ``sigma`` (one per sample)."""

    @abstractmethod
    def latent_size(self, vae: torch.nn.Module, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(frames, height, width) of the latents that ``vae`` decodes to media of the given size; raises naming the
        size when it does not divide."""

    @abstractmethod
    def decode(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Media in ``[-1, 1]`` (``(b, 3, H, W)`` images, ``(b, 3, F, H, W)`` videos) from the transformer's latents,
        undoing the scaling the family's VAE latents were trained with."""

    def text_dims(self, model: torch.nn.Module) -> tuple[int, int | None]:
        """(token embedding width, pooled width or None) the transformer expects."""
        config = model.config
        return config.get("joint_attention_dim", config.get("text_dim")), config.get("pooled_projection_dim")

    def load(self, transformer_dir: str | Path) -> torch.nn.Module:
        """Config + safetensors weights of ``transformer_dir``, strictly, in float32 (FSDP's mixed precision casts
        for compute). diffusers' ``from_pretrained`` needs ``accelerate`` for models that keep modules in fp32, as Wan
        does; this path needs nothing beyond diffusers."""
        transformer_dir = Path(transformer_dir)
        model = self.model_class.from_config(self.model_class.load_config(str(transformer_dir)))
        weights = sorted(transformer_dir.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError(f"no *.safetensors weights in {transformer_dir}")
        state: dict[str, torch.Tensor] = {}
        for path in weights:
            state.update(load_file(str(path)))
        model.load_state_dict(state, strict=True)
        return model


def _divided(size: int, factor: int, what: str) -> int:
    if size % factor:
        raise ValueError(f"{what} {size} is not a multiple of the VAE's scale factor {factor}")
    return size // factor


class SD3Family(FlowFamily):
    family = "sd3"
    model_class = SD3Transformer2DModel
    vae_class = AutoencoderKL

    def tiny_config(self) -> dict:
        return {"sample_size": 8, "patch_size": 2, "in_channels": 3, "out_channels": 3, "num_layers": 2,
                "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16,
                "caption_projection_dim": 16, "pooled_projection_dim": 8, "pos_embed_max_size": 16}

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        if frames != 1:
            raise ValueError(f"{self.family} generates images: frames must be 1, got {frames}")
        return batch, model.config.in_channels, height, width

    def latent_size(self, vae: torch.nn.Module, frames: int, height: int, width: int) -> tuple[int, int, int]:
        if frames != 1:
            raise ValueError(f"{self.family} generates images: worker.rollout.num_frames must be 1, got {frames}")
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return 1, _divided(height, factor, "worker.rollout.height"), _divided(width, factor, "worker.rollout.width")

    def decode(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        latents = latents / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        return vae.decode(latents.to(vae.dtype), return_dict=False)[0]

    def velocity(self, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                 text: TextConditioning) -> torch.Tensor:
        if text.pooled is None:
            raise ValueError("SD3 needs a pooled text embedding (TextConditioning.pooled)")
        timestep = (sigma * 1000).expand(latents.shape[0]).to(latents.dtype)
        return model(hidden_states=latents, encoder_hidden_states=text.tokens, pooled_projections=text.pooled,
                     timestep=timestep, return_dict=False)[0]


class WanFamily(FlowFamily):
    family = "wan"
    model_class = WanTransformer3DModel
    vae_class = AutoencoderKLWan

    def tiny_config(self) -> dict:
        return {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 3,
                "out_channels": 3, "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2,
                "rope_max_seq_len": 32}

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        return batch, model.config.in_channels, frames, height, width

    def latent_size(self, vae: torch.nn.Module, frames: int, height: int, width: int) -> tuple[int, int, int]:
        temporal, spatial = vae.config.scale_factor_temporal, vae.config.scale_factor_spatial
        if (frames - 1) % temporal:
            raise ValueError(f"worker.rollout.num_frames - 1 must be a multiple of the VAE's temporal factor "
                             f"{temporal}, got num_frames={frames}")
        return ((frames - 1) // temporal + 1, _divided(height, spatial, "worker.rollout.height"),
                _divided(width, spatial, "worker.rollout.width"))

    def decode(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean, dtype=latents.dtype, device=latents.device).view(shape)
        std = torch.tensor(vae.config.latents_std, dtype=latents.dtype, device=latents.device).view(shape)
        return vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0]

    def velocity(self, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                 text: TextConditioning) -> torch.Tensor:
        timestep = (sigma * 1000).expand(latents.shape[0]).to(latents.dtype)
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=text.tokens, return_dict=False)[0]


FLOW_FAMILIES: dict[str, FlowFamily] = {family.family: family for family in (SD3Family(), WanFamily())}


def family_of(model_dir: str | Path) -> FlowFamily:
    """The family whose transformer class ``model_dir/transformer/config.json`` names (diffusers' ``_class_name``)."""
    config = Path(model_dir) / "transformer" / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: worker.actor.model.model_path must be a diffusers pipeline "
                                "directory (transformer/, text_encoder/, tokenizer/, and vae/ unless pixel-space)")
    name = json.loads(config.read_text()).get("_class_name")
    for family in FLOW_FAMILIES.values():
        if family.model_class.__name__ == name:
            return family
    known = {f.model_class.__name__: f.family for f in FLOW_FAMILIES.values()}
    raise ValueError(f"{config} names transformer class {name!r}; supported: {known}")
