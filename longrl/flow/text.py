"""The frozen text encoders that turn prompts into what a flow transformer attends to, laid out as diffusers' pipelines.

A generator directory has diffusers' layout (``transformer/``, ``text_encoder/``, ``tokenizer/``, ...). Which encoders
it holds, and how their outputs become the conditioning, is the family's (:attr:`.family.FlowFamily.text_parts`,
:meth:`.family.FlowFamily.condition`), so a trained transformer sees the conditioning it was pre-trained on. Prompts
are tokenized by each tokenizer with its own special tokens (CLIP needs its start and end tokens: it pools at the end
token) and padded to a fixed length, so the sequence length never depends on the batch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from longrl.flow.families import get_family
from longrl.flow.family import EncoderPart, TextConditioning

__all__ = ["TextEncoder"]


class TextEncoder:
    """``family``'s frozen text encoder(s) and tokenizer(s) from ``model_dir``, in eval mode on ``device``.

    ``max_length`` bounds the T5/UMT5 sequence (None: the family's pipeline default); CLIP sequences are CLIP's own
    length. ``joint_dim`` is the transformer's token width (SD3 pads its CLIP features to it).
    """

    def __init__(self, family: str, model_dir: str | Path, device: torch.device, joint_dim: int,
                 max_length: int | None = None, dtype: torch.dtype = torch.float32):
        self.flow = get_family(family)
        model_dir = Path(model_dir)
        self.device, self.joint_dim = device, joint_dim
        self.max_length = max_length or self.flow.default_text_length
        self.parts: list[EncoderPart] = []
        for index, part in enumerate(self.flow.text_parts):
            if not (model_dir / part.encoder).is_dir():
                if index == 0:
                    raise FileNotFoundError(f"{model_dir / part.encoder} not found: a {family} pipeline directory "
                                            f"needs its text encoder there (and its tokenizer in "
                                            f"{model_dir / part.tokenizer})")
                continue
            model = part.model_class.from_pretrained(str(model_dir / part.encoder), dtype=dtype)
            model = model.requires_grad_(False).eval().to(device)
            loaded = AutoTokenizer.from_pretrained(str(model_dir / part.tokenizer))
            # A tokenizer's model_max_length caps the T5 length too (a tiny one's is small; released ones' are not).
            wanted = min(self.max_length, loaded.model_max_length) if part.role == "t5" else loaded.model_max_length
            positions = getattr(model.config, "max_position_embeddings", None)
            self.parts.append(EncoderPart(model, loaded, min(wanted, positions) if positions else wanted, part.role))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextConditioning:
        """The conditioning of ``prompts``: ``tokens`` (b, L, joint_dim), and SD3's ``pooled`` (b, pooled_dim)."""
        return self.flow.condition(self.parts, prompts, self.device, self.joint_dim, self.max_length)
