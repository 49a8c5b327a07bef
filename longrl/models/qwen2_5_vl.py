"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention vision tower, video time in mrope.

Its processor also returns ``second_per_grid_ts`` (seconds per temporal patch, from the sampled fps), which
the model turns into the temporal mrope positions of video tokens.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from longrl.models._qwen_vl import QwenVLAdapter
from longrl.models.registry import register_adapter
from longrl.models.tiny import (
    PATCH_SIZE,
    SPATIAL_MERGE_SIZE,
    TEMPORAL_PATCH_SIZE,
    TINY_TEXT_SIZES,
    tiny_text_config_kwargs,
)
from longrl.models.tokenizer import QwenTokenIds


@register_adapter
class Qwen2_5_VLAdapter(QwenVLAdapter):
    family: ClassVar[str] = "qwen2_5_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    model_class = Qwen2_5_VLForConditionalGeneration
    processor_class = Qwen2_5_VLProcessor

    def tiny_config(self, token_ids: QwenTokenIds) -> Qwen2_5_VLConfig:
        # Windows of 56 px are 2x2 merged tokens, so a frame of a few merged tokens per side is split into
        # several windows and the windowed block really differs from the full-attention one (block 1).
        vision = {
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
            "tokens_per_second": 2,
        }
        return Qwen2_5_VLConfig(
            text_config=tiny_text_config_kwargs(token_ids, mrope=True),
            vision_config=vision,
            **token_ids.vision_token_kwargs(),
            # Tied like Qwen2.5-VL-3B, the benchmark architecture.
            tie_word_embeddings=True,
            dtype="float32",
        )
