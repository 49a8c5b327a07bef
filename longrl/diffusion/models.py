"""Flow-matching generators through ``diffusers``: Stable Diffusion 3 (images) and Wan (videos), one class each.

Each says how to build a tiny random transformer locally, how to load one, what shape its latents have, and how to
ask it for the velocity at a noise level (``timestep = 1000 * sigma``, the scale both were trained with). Text
conditioning arrives already encoded (:class:`TextConditioning`); the text encoders are not part of this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import SD3Transformer2DModel, WanTransformer3DModel
from safetensors.torch import load_file

__all__ = ["FLOW_FAMILIES", "FlowFamily", "SD3Family", "TextConditioning", "WanFamily"]


@dataclass
class TextConditioning:
    tokens: torch.Tensor  # (b, L, text_dim): the text encoder's sequence output
    pooled: torch.Tensor | None = None  # (b, pooled_dim): SD3's pooled CLIP embedding


class FlowFamily(ABC):
    family: ClassVar[str]
    model_class: ClassVar[type[torch.nn.Module]]

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

    def text_dims(self, model: torch.nn.Module) -> tuple[int, int | None]:
        """(token embedding width, pooled width or None) the transformer expects."""
        config = model.config
        return config.get("joint_attention_dim", config.get("text_dim")), config.get("pooled_projection_dim")

    def build_tiny(self, out_dir: str | Path, seed: int = 0) -> Path:
        """A tiny randomly initialised (seeded) transformer saved with ``save_pretrained``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.model_class(**self.tiny_config())
        model.save_pretrained(str(out_dir))
        return Path(out_dir)

    def load(self, model_dir: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
        """Config + safetensors weights, strictly. (diffusers' ``from_pretrained`` needs ``accelerate`` for models that
        keep modules in fp32, as Wan does; this path needs nothing beyond diffusers.)"""
        model_dir = Path(model_dir)
        model = self.model_class.from_config(self.model_class.load_config(str(model_dir)))
        weights = sorted(model_dir.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
        state: dict[str, torch.Tensor] = {}
        for path in weights:
            state.update(load_file(str(path)))
        model.load_state_dict(state, strict=True)
        return model.to(dtype)


class SD3Family(FlowFamily):
    family = "sd3"
    model_class = SD3Transformer2DModel

    def tiny_config(self) -> dict:
        return {"sample_size": 8, "patch_size": 2, "in_channels": 3, "out_channels": 3, "num_layers": 2,
                "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16,
                "caption_projection_dim": 16, "pooled_projection_dim": 8, "pos_embed_max_size": 16}

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        if frames != 1:
            raise ValueError(f"{self.family} generates images: frames must be 1, got {frames}")
        return batch, model.config.in_channels, height, width

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

    def tiny_config(self) -> dict:
        return {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 3,
                "out_channels": 3, "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2,
                "rope_max_seq_len": 32}

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        return batch, model.config.in_channels, frames, height, width

    def velocity(self, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                 text: TextConditioning) -> torch.Tensor:
        timestep = (sigma * 1000).expand(latents.shape[0]).to(latents.dtype)
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=text.tokens, return_dict=False)[0]


FLOW_FAMILIES: dict[str, FlowFamily] = {family.family: family for family in (SD3Family(), WanFamily())}
