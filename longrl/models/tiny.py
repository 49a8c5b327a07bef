"""Sizes and the save step shared by every family's tiny builder.

Tiny models run the real transformers model code at toy sizes, so CPU tests exercise the same paths as
real checkpoints (GQA, 3-D mrope, windowed vision attention) in a few MB of weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedConfig, PreTrainedModel

from longrl.models.tokenizer import QwenTokenIds

# head_dim = 128 / 4 = 32, the smallest head size vLLM's CPU attention kernels take (so the same tiny models run
# under both rollout engines); two query heads share each KV head (GQA) as in the real Qwen models.
TINY_TEXT_SIZES: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}
# Qwen's mrope gives the (t, h, w) axes 16/24/24 of the 64 rotary frequency pairs of a 128-wide head;
# the same proportions of the 16 pairs of a 32-wide head.
TINY_MROPE_SECTION = [4, 6, 6]
ROPE_THETA = 1_000_000.0

# Vision towers: patch 14, 2x2 spatial merge and 2-frame temporal patches, as in the real checkpoints.
PATCH_SIZE = 14
SPATIAL_MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
# Qwen2.5-VL's windowed tower (Qwen2.5-Omni's thinker has the same): windows of 56 px are 2x2 merged tokens, so a
# frame of a few merged tokens per side is split into several windows and the windowed block really differs from the
# full-attention one (block 1).
TINY_WINDOWED_VISION: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": TINY_TEXT_SIZES["hidden_size"],
    "patch_size": PATCH_SIZE,
    "spatial_merge_size": SPATIAL_MERGE_SIZE,
    "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    "window_size": 2 * PATCH_SIZE * SPATIAL_MERGE_SIZE,
    "fullatt_block_indexes": [1],
}


def tiny_text_config_kwargs(token_ids: QwenTokenIds, mrope: bool) -> dict[str, Any]:
    """Keyword arguments of a tiny Qwen text config whose vocabulary and special ids match the tokenizer."""
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    if mrope:
        rope["mrope_section"] = list(TINY_MROPE_SECTION)
    return {
        **TINY_TEXT_SIZES,
        "vocab_size": token_ids.vocab_size,
        "rope_parameters": rope,
        "bos_token_id": token_ids.pad_token_id,
        "eos_token_id": token_ids.eos_token_id,
        "pad_token_id": token_ids.pad_token_id,
    }


def random_model(model_cls: type[PreTrainedModel], config: PreTrainedConfig, token_ids: QwenTokenIds,
                 seed: int) -> PreTrainedModel:
    """``model_cls(config)`` initialised from ``seed`` (without disturbing the caller's RNG), in float32, with a
    generation config that stops at end of turn or end of text, as Qwen's do."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.generation_config = GenerationConfig(
        bos_token_id=token_ids.pad_token_id,
        eos_token_id=[token_ids.eos_token_id, token_ids.pad_token_id],
        pad_token_id=token_ids.pad_token_id,
    )
    return model.to(torch.float32)


def save_random_model(
    model_cls: type[PreTrainedModel], config: PreTrainedConfig, token_ids: QwenTokenIds, out_dir: Path, seed: int
) -> None:
    """:func:`random_model` saved as safetensors in ``out_dir``."""
    random_model(model_cls, config, token_ids, seed).save_pretrained(str(out_dir), safe_serialization=True)
