"""Wan (text-to-video): diffusers' ``WanTransformer3DModel`` and ``AutoencoderKLWan``, conditioned as ``WanPipeline``
does: UMT5 (``text_encoder/`` + ``tokenizer/``) with every position past each prompt's end zeroed."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5EncoderModel

from longrl.flow.family import EncoderPart, FlowFamily, TextConditioning, TextPart, divided

__all__ = ["WanFamily"]


class WanFamily(FlowFamily):
    family = "wan"
    hub_names = ("wan2_",)
    model_class = WanTransformer3DModel
    vae_class = AutoencoderKLWan
    pipeline_class = "WanPipeline"
    text_parts = (TextPart("text_encoder", "tokenizer", UMT5EncoderModel, "t5"),)
    default_text_length = 512

    def tiny_config(self) -> dict:
        return {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 3,
                "out_channels": 3, "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2,
                "rope_max_seq_len": 32}

    def tiny_vae(self) -> torch.nn.Module:  # and 2x temporal compression
        return self.vae_class(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                              latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.8, 1.0, 2.0],
                              scale_factor_temporal=2, scale_factor_spatial=2)

    def latent_channels(self, vae: torch.nn.Module) -> int:
        return vae.config.z_dim

    def text_dims(self, model: torch.nn.Module) -> tuple[int, int | None]:
        return model.config.text_dim, None

    def condition(self, parts: list[EncoderPart], prompts: list[str], device: torch.device, joint_dim: int,
                  max_length: int) -> TextConditioning:
        part = parts[0]
        ids, mask = part.tokens(prompts, device)
        hidden = part.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return TextConditioning(hidden * mask.unsqueeze(-1).to(hidden.dtype))

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        return batch, model.config.in_channels, frames, height, width

    def latent_size(self, vae: torch.nn.Module, frames: int, height: int, width: int) -> tuple[int, int, int]:
        temporal, spatial = vae.config.scale_factor_temporal, vae.config.scale_factor_spatial
        if (frames - 1) % temporal:
            raise ValueError(f"worker.rollout.num_frames - 1 must be a multiple of the VAE's temporal factor "
                             f"{temporal}, got num_frames={frames}")
        return ((frames - 1) // temporal + 1, divided(height, spatial, "worker.rollout.height"),
                divided(width, spatial, "worker.rollout.width"))

    def decode(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean, dtype=latents.dtype, device=latents.device).view(shape)
        std = torch.tensor(vae.config.latents_std, dtype=latents.dtype, device=latents.device).view(shape)
        return vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0]

    def velocity(self, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                 text: TextConditioning) -> torch.Tensor:
        timestep = (sigma * 1000).expand(latents.shape[0]).to(latents.dtype)
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=text.tokens, return_dict=False)[0]
