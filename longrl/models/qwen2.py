"""Qwen2 / Qwen2.5 text models (``Qwen2ForCausalLM``): the text-only family, for text tasks and baselines.

Its "processor" is the tokenizer; messages may hold text only, and a video is refused with a clear error
rather than being rendered as placeholder tokens the model has no vision tower for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel, Qwen2Config,
                          Qwen2ForCausalLM)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from longrl.models.registry import ModelAdapter
from longrl.models.remote_code import announce_remote_code
from longrl.models.tiny import save_random_model, tiny_text_config_kwargs
from longrl.models.tokenizer import QwenTokenIds, build_tokenizer

if TYPE_CHECKING:
    from longrl.data.video import DecodedVideo


class Qwen2Adapter(ModelAdapter):
    family: ClassVar[str] = "qwen2"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2",)
    supports_video: ClassVar[bool] = False
    config_class: ClassVar[type[PretrainedConfig]] = Qwen2Config
    model_class: ClassVar[type[PreTrainedModel]] = Qwen2ForCausalLM

    def build_tiny(self, out_dir: str | Path, seed: int = 0) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        token_ids = QwenTokenIds.from_tokenizer(build_tokenizer(out_dir))
        # Tied like the small Qwen2.5 / Qwen3 text models (0.5B-4B).
        config = self.config_class(**self.tiny_config_kwargs(token_ids), tie_word_embeddings=True, dtype="float32")
        save_random_model(self.model_class, config, token_ids, out_dir, seed)
        return out_dir

    def tiny_config_kwargs(self, token_ids: QwenTokenIds) -> dict[str, Any]:
        return tiny_text_config_kwargs(token_ids, mrope=False)

    def load_processor(self, model_dir: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
        announce_remote_code(model_dir, trust_remote_code)
        return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)

    def load_model(self, model_dir: str | Path, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False) -> PreTrainedModel:
        announce_remote_code(model_dir, trust_remote_code)
        return self.prepare_model(AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype,
                                                                       trust_remote_code=trust_remote_code))

    def encode(
        self, processor: PreTrainedTokenizerBase, messages: list[dict[str, Any]], video: DecodedVideo | None
    ) -> dict[str, torch.Tensor]:
        if video is not None:
            raise ValueError(f"model family {self.family!r} is text-only and cannot take video {video.path}")
        for message in messages:
            if isinstance(message["content"], str):
                continue
            for item in message["content"]:
                if item.get("type") != "text":
                    raise ValueError(
                        f"model family {self.family!r} is text-only: a {message['role']} message holds a "
                        f"{item.get('type')!r} item"
                    )
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return dict(processor([text], return_tensors="pt"))
