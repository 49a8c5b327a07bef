"""Qwen3 text models (``Qwen3ForCausalLM``): the Qwen2 text family's contract with Qwen3's architecture.

Qwen3 differs from Qwen2 inside the model (RMS-normalised queries and keys per head, an explicit ``head_dim``, no
projection biases); the tokenizer, chat template and text-only rules are Qwen2's, so only the model classes and the
tiny config change. Its attention goes through transformers' attention interface like Qwen2's, so MR-SP's sequence
parallel attention and the rollout's per-prompt cache apply unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import PretrainedConfig, PreTrainedModel, Qwen3Config, Qwen3ForCausalLM

from longrl.models.qwen2 import Qwen2Adapter
from longrl.models.tokenizer import QwenTokenIds


class Qwen3Adapter(Qwen2Adapter):
    family: ClassVar[str] = "qwen3"
    model_types: ClassVar[tuple[str, ...]] = ("qwen3",)
    config_class: ClassVar[type[PretrainedConfig]] = Qwen3Config
    model_class: ClassVar[type[PreTrainedModel]] = Qwen3ForCausalLM

    def tiny_config_kwargs(self, token_ids: QwenTokenIds) -> dict[str, Any]:
        kwargs = super().tiny_config_kwargs(token_ids)
        return {**kwargs, "head_dim": kwargs["hidden_size"] // kwargs["num_attention_heads"]}
