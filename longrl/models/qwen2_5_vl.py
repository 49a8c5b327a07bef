"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention vision tower, video time in mrope.

Its processor also returns ``second_per_grid_ts`` (seconds per temporal patch, from the sampled fps), which
the model turns into the temporal mrope positions of video tokens.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from longrl.models._qwen_vl import QwenVLAdapter
from longrl.models.tiny import TINY_WINDOWED_VISION, tiny_text_config_kwargs
from longrl.models.tokenizer import QwenTokenIds


class Qwen2_5_VLAdapter(QwenVLAdapter):
    family: ClassVar[str] = "qwen2_5_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    model_class = Qwen2_5_VLForConditionalGeneration
    processor_class = Qwen2_5_VLProcessor

    def tiny_config(self, token_ids: QwenTokenIds) -> Qwen2_5_VLConfig:
        vision = {**TINY_WINDOWED_VISION, "tokens_per_second": 2}
        return Qwen2_5_VLConfig(
            text_config=tiny_text_config_kwargs(token_ids, mrope=True),
            vision_config=vision,
            **token_ids.vision_token_kwargs(),
            # Tied like Qwen2.5-VL-3B, the benchmark architecture.
            tie_word_embeddings=True,
            dtype="float32",
        )
