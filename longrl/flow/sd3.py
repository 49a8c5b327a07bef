"""Stable Diffusion 3 (images): diffusers' ``SD3Transformer2DModel`` and ``AutoencoderKL``, conditioned as
``StableDiffusion3Pipeline`` does.

SD3 stacks up to three text encoders. The CLIP ones (``text_encoder/`` + ``tokenizer/``, ``text_encoder_2/`` +
``tokenizer_2/``) give their penultimate hidden states, joined along the feature axis and zero-padded to the
transformer's ``joint_attention_dim``, and their projected end-of-text embeddings, joined into the pooled vector. The
T5 one (``text_encoder_3/`` + ``tokenizer_3/``) gives its last hidden states, appended along the sequence; without it
(SD3 is released to run without T5) that part is zeros of the same length.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from transformers import CLIPTextModelWithProjection, T5EncoderModel

from longrl.flow.family import EncoderPart, FlowFamily, TextConditioning, TextPart, divided

__all__ = ["SD3Family"]


class SD3Family(FlowFamily):
    family = "sd3"
    hub_names = ("stable_diffusion_3",)
    model_class = SD3Transformer2DModel
    vae_class = AutoencoderKL
    pipeline_class = "StableDiffusion3Pipeline"
    text_parts = (TextPart("text_encoder", "tokenizer", CLIPTextModelWithProjection, "clip"),
                  TextPart("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection, "clip"),
                  TextPart("text_encoder_3", "tokenizer_3", T5EncoderModel, "t5"))
    default_text_length = 256

    def tiny_config(self) -> dict:
        return {"sample_size": 8, "patch_size": 2, "in_channels": 3, "out_channels": 3, "num_layers": 2,
                "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16,
                "caption_projection_dim": 16, "pooled_projection_dim": 8, "pos_embed_max_size": 16}

    def tiny_vae(self) -> torch.nn.Module:
        return self.vae_class(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                              layers_per_block=1, sample_size=16, scaling_factor=1.5305, shift_factor=0.0609)

    def latent_channels(self, vae: torch.nn.Module) -> int:
        return vae.config.latent_channels

    def text_dims(self, model: torch.nn.Module) -> tuple[int, int | None]:
        return model.config.joint_attention_dim, model.config.pooled_projection_dim

    def condition(self, parts: list[EncoderPart], prompts: list[str], device: torch.device, joint_dim: int,
                  max_length: int) -> TextConditioning:
        clip_tokens, pooled = [], []
        for part in (p for p in parts if p.role == "clip"):
            out = part.model(input_ids=part.tokens(prompts, device)[0], output_hidden_states=True)
            clip_tokens.append(out.hidden_states[-2])
            pooled.append(out.text_embeds)
        tokens = torch.cat(clip_tokens, dim=-1)
        tokens = torch.nn.functional.pad(tokens, (0, joint_dim - tokens.shape[-1]))
        t5 = [p for p in parts if p.role == "t5"]
        if t5:  # as long as its tokenizer allows; without T5, zeros of the configured length
            t5_tokens = t5[0].model(input_ids=t5[0].tokens(prompts, device)[0]).last_hidden_state
        else:
            t5_tokens = tokens.new_zeros(len(prompts), max_length, joint_dim)
        return TextConditioning(torch.cat([tokens, t5_tokens], dim=1), torch.cat(pooled, dim=-1))

    def latent_shape(self, model: torch.nn.Module, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        if frames != 1:
            raise ValueError(f"{self.family} generates images: frames must be 1, got {frames}")
        return batch, model.config.in_channels, height, width

    def latent_size(self, vae: torch.nn.Module, frames: int, height: int, width: int) -> tuple[int, int, int]:
        if frames != 1:
            raise ValueError(f"{self.family} generates images: worker.rollout.num_frames must be 1, got {frames}")
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return 1, divided(height, factor, "worker.rollout.height"), divided(width, factor, "worker.rollout.width")

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
