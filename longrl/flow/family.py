"""What Flow-GRPO needs to know about a generator family, as one abstract class; one file per family implements it
(:mod:`.sd3`, :mod:`.wan`) and :mod:`.families` names them.

A family says how to build a tiny random transformer (and VAE) locally, how to load one, what shape its latents have,
how to ask it for the velocity at a noise level (``timestep = 1000 * sigma``, the scale SD3 and Wan were trained with),
how its VAE (``vae/`` of a diffusers pipeline directory) maps media sizes to latent sizes and latents back to media,
and which frozen text encoders its pipeline directory holds and how their outputs become the transformer's
conditioning (:class:`TextConditioning`, computed by :mod:`.text`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

__all__ = ["EncoderPart", "FlowFamily", "TextConditioning", "TextPart", "divided"]


@dataclass
class TextConditioning:
    tokens: torch.Tensor  # (b, L, text_dim): the text encoder's sequence output
    pooled: torch.Tensor | None = None  # (b, pooled_dim): SD3's pooled CLIP embedding


@dataclass(frozen=True)
class TextPart:
    """One frozen text encoder of a pipeline directory: its folder, its tokenizer's folder, its class, and its role
    ("clip" parts give tokens and a pooled vector, "t5" parts tokens only)."""

    encoder: str
    tokenizer: str
    model_class: type[PreTrainedModel]
    role: str


@dataclass
class EncoderPart:
    """A loaded :class:`TextPart`: the encoder, its tokenizer and the fixed length prompts are padded to (so the
    sequence length never depends on the batch)."""

    model: PreTrainedModel
    tokenizer: Any
    max_length: int
    role: str

    def tokens(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, attention mask) of ``prompts``, each with this tokenizer's own special tokens."""
        out = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return out["input_ids"].to(device), out["attention_mask"].to(device)


def divided(size: int, factor: int, what: str) -> int:
    """``size / factor``, raising naming the config key ``what`` when it does not divide."""
    if size % factor:
        raise ValueError(f"{what} {size} is not a multiple of the VAE's scale factor {factor}")
    return size // factor


class FlowFamily(ABC):
    family: ClassVar[str]
    model_class: ClassVar[type[torch.nn.Module]]
    vae_class: ClassVar[type[torch.nn.Module]]
    # words of released checkpoints' names (lower-case, '.' and '-' read as '_') that mark the family in another
    # trainer's scripts, e.g. a hub ID
    hub_names: ClassVar[tuple[str, ...]]
    pipeline_class: ClassVar[str]  # the diffusers pipeline a directory of this family names in model_index.json
    # The pipeline directory's text encoders, in order; only the first is required.
    text_parts: ClassVar[tuple[TextPart, ...]]
    default_text_length: ClassVar[int]  # the T5 sequence length the family's pipeline uses by default

    @abstractmethod
    def tiny_config(self) -> dict:
        """Keyword arguments of a tiny transformer of this family."""

    @abstractmethod
    def tiny_vae(self) -> torch.nn.Module:
        """A tiny random VAE of the family's class (2x spatial compression into 4 channels)."""

    @abstractmethod
    def latent_channels(self, vae: torch.nn.Module) -> int:
        """The channels of ``vae``'s latents (what the transformer takes and predicts)."""

    @abstractmethod
    def text_dims(self, model: torch.nn.Module) -> tuple[int, int | None]:
        """(token embedding width, pooled width or None) the transformer expects."""

    @abstractmethod
    def condition(self, parts: list[EncoderPart], prompts: list[str], device: torch.device, joint_dim: int,
                  max_length: int) -> TextConditioning:
        """The conditioning of ``prompts`` from the loaded ``parts`` (those of :attr:`text_parts` the directory has),
        as the family's released pipeline computes it; ``tokens`` are ``joint_dim`` wide."""

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
