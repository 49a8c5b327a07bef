"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): full-attention vision tower, frame-index mrope time."""

from __future__ import annotations

from typing import ClassVar

from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

from longrl.models._qwen_vl import QwenVLAdapter
from longrl.models.tiny import (
    PATCH_SIZE,
    SPATIAL_MERGE_SIZE,
    TEMPORAL_PATCH_SIZE,
    TINY_TEXT_SIZES,
    tiny_text_config_kwargs,
)
from longrl.models.tokenizer import QwenTokenIds


class Qwen2VLAdapter(QwenVLAdapter):
    family: ClassVar[str] = "qwen2_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_vl",)
    model_class = Qwen2VLForConditionalGeneration
    processor_class = Qwen2VLProcessor

    def tiny_config(self, token_ids: QwenTokenIds) -> Qwen2VLConfig:
        # In Qwen2-VL's vision config ``embed_dim`` is the tower width and ``hidden_size`` its output width.
        vision = {
            "depth": 2,
            "embed_dim": 32,
            "mlp_ratio": 2,
            "num_heads": 2,
            "hidden_size": TINY_TEXT_SIZES["hidden_size"],
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": SPATIAL_MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        }
        return Qwen2VLConfig(
            text_config=tiny_text_config_kwargs(token_ids, mrope=True),
            vision_config=vision,
            **token_ids.vision_token_kwargs(),
            # Untied like Qwen2-VL-7B, so the untied path is exercised too.
            tie_word_embeddings=False,
            dtype="float32",
        )
