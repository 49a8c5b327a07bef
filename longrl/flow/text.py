"""The frozen text encoders that turn prompts into what a flow transformer attends to, laid out as diffusers' pipelines.

A generator directory has diffusers' layout (``transformer/``, ``text_encoder/``, ``tokenizer/``, ...). Each family
encodes as its released pipeline does, so a trained transformer sees the conditioning it was pre-trained on:

* **SD3** stacks up to three encoders. The CLIP ones (``text_encoder/`` + ``tokenizer/``, ``text_encoder_2/`` +
  ``tokenizer_2/``, ``CLIPTextModelWithProjection``) give their penultimate hidden states, joined along the feature
  axis and zero-padded to the transformer's ``joint_attention_dim``, and their projected end-of-text embeddings, joined
  into the pooled vector. The T5 one (``text_encoder_3/`` + ``tokenizer_3/``) gives its last hidden states, appended
  along the sequence; without it (SD3 is released to run without T5) that part is zeros of the same length.
* **Wan** runs UMT5 (``text_encoder/`` + ``tokenizer/``) and zeroes every position past each prompt's end.

Prompts are tokenized by each tokenizer with its own special tokens (CLIP needs its start and end tokens: it pools at
the end token) and padded to a fixed length, so the sequence length never depends on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPTextModelWithProjection, PreTrainedModel, T5EncoderModel, UMT5EncoderModel

from longrl.flow.families import TextConditioning

__all__ = ["DEFAULT_MAX_LENGTH", "TEXT_PARTS", "TextEncoder"]

# (encoder folder, tokenizer folder, class, role) per family; "clip" parts give tokens and a pooled vector, "t5"
# parts tokens only. Only the first part of each family is required.
TEXT_PARTS: dict[str, tuple[tuple[str, str, type[PreTrainedModel], str], ...]] = {
    "sd3": (("text_encoder", "tokenizer", CLIPTextModelWithProjection, "clip"),
            ("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection, "clip"),
            ("text_encoder_3", "tokenizer_3", T5EncoderModel, "t5")),
    "wan": (("text_encoder", "tokenizer", UMT5EncoderModel, "t5"),),
}
# The T5 sequence length each family's pipeline uses by default.
DEFAULT_MAX_LENGTH = {"sd3": 256, "wan": 512}


@dataclass
class _Part:
    model: PreTrainedModel
    tokenizer: Any
    max_length: int
    role: str

    def tokens(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return out["input_ids"].to(device), out["attention_mask"].to(device)


class TextEncoder:
    """``family``'s frozen text encoder(s) and tokenizer(s) from ``model_dir``, in eval mode on ``device``.

    ``max_length`` bounds the T5/UMT5 sequence (None: the family's pipeline default); CLIP sequences are CLIP's own
    length. ``joint_dim`` is the transformer's token width (SD3 pads its CLIP features to it).
    """

    def __init__(self, family: str, model_dir: str | Path, device: torch.device, joint_dim: int,
                 max_length: int | None = None, dtype: torch.dtype = torch.float32):
        if family not in TEXT_PARTS:
            raise ValueError(f"no text encoder layout for family {family!r}; known: {sorted(TEXT_PARTS)}")
        model_dir = Path(model_dir)
        self.family, self.device, self.joint_dim = family, device, joint_dim
        self.max_length = max_length or DEFAULT_MAX_LENGTH[family]
        self.parts: list[_Part] = []
        for index, (encoder, tokenizer, cls, role) in enumerate(TEXT_PARTS[family]):
            if not (model_dir / encoder).is_dir():
                if index == 0:
                    raise FileNotFoundError(f"{model_dir / encoder} not found: a {family} pipeline directory needs "
                                            f"its text encoder there (and its tokenizer in {model_dir / tokenizer})")
                continue
            model = cls.from_pretrained(str(model_dir / encoder), dtype=dtype).requires_grad_(False).eval().to(device)
            loaded = AutoTokenizer.from_pretrained(str(model_dir / tokenizer))
            # A tokenizer's model_max_length caps the T5 length too (a tiny one's is small; released ones' are not).
            wanted = min(self.max_length, loaded.model_max_length) if role == "t5" else loaded.model_max_length
            positions = getattr(model.config, "max_position_embeddings", None)
            self.parts.append(_Part(model, loaded, min(wanted, positions) if positions else wanted, role))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextConditioning:
        """The conditioning of ``prompts``: ``tokens`` (b, L, joint_dim), and SD3's ``pooled`` (b, pooled_dim)."""
        if self.family == "wan":
            part = self.parts[0]
            ids, mask = part.tokens(prompts, self.device)
            hidden = part.model(input_ids=ids, attention_mask=mask).last_hidden_state
            return TextConditioning(hidden * mask.unsqueeze(-1).to(hidden.dtype))
        clip_tokens, pooled = [], []
        for part in (p for p in self.parts if p.role == "clip"):
            out = part.model(input_ids=part.tokens(prompts, self.device)[0], output_hidden_states=True)
            clip_tokens.append(out.hidden_states[-2])
            pooled.append(out.text_embeds)
        tokens = torch.cat(clip_tokens, dim=-1)
        tokens = torch.nn.functional.pad(tokens, (0, self.joint_dim - tokens.shape[-1]))
        t5 = [p for p in self.parts if p.role == "t5"]
        if t5:  # as long as its tokenizer allows; without T5, zeros of the configured length
            t5_tokens = t5[0].model(input_ids=t5[0].tokens(prompts, self.device)[0]).last_hidden_state
        else:
            t5_tokens = tokens.new_zeros(len(prompts), self.max_length, self.joint_dim)
        return TextConditioning(torch.cat([tokens, t5_tokens], dim=1), torch.cat(pooled, dim=-1))
