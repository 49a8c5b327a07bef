"""Sharper random weights for tiny models, shared by the rollout-engine tests.

The tiny checkpoints' init is so flat that greedy decoding repeats the last prompt token whatever the positions or
video (tied embeddings dominate), which would make "same tokens" comparisons vacuous.
"""

from __future__ import annotations

from pathlib import Path

import torch

from longrl.models import get_adapter


def sharp_weights(model: torch.nn.Module, seed: int, gain: float = 2.0) -> dict[str, torch.Tensor]:
    """Random text-model weights with unit-scale embeddings and ``gain / sqrt(fan_in)`` matrices (towers kept)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, value in model.state_dict().items():
        if value.dim() >= 2 and "visual" not in name and "audio_tower" not in name:
            scale = 1.0 if "embed_tokens" in name or "lm_head" in name else gain / value.shape[-1] ** 0.5
            weights[name] = torch.randn(value.shape, generator=generator) * scale
        else:
            weights[name] = value.clone()
    embedding = next(name for name in weights if name.endswith("embed_tokens.weight") and "visual" not in name)
    if getattr(model.config.get_text_config(), "tie_word_embeddings", False) or getattr(
            model.config, "tie_word_embeddings", False):
        weights["lm_head.weight"] = weights[embedding]
    return weights


def save_sharp_model(family: str, directory: Path, seed: int = 0, gain: float = 2.0) -> Path:
    """A tiny ``family`` model directory whose saved weights are the sharp ones (engines like vLLM load from disk)."""
    adapter = get_adapter(family)
    adapter.build_tiny(directory, seed=seed)
    model = adapter.load_model(directory)
    model.load_state_dict(sharp_weights(model, seed=seed, gain=gain))
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory
