"""The hook for a learned scorer: a CLIP-style image-text model from a local directory scores media against prompts.

Two ways to bring a learned reward, both through the reward API:

* any function of yours, ``worker.reward.reward_function=path/to/scorer.py:fn`` (sequential or batch), receiving the
  inputs described in :mod:`longrl.flow.rewards` and loading whatever model it wants (load it once at module
  level or behind a cache: the function is called every step);
* this module's ``clip_score`` with ``worker.reward.reward_function_kwargs={model_dir: /path/to/model}``: a
  transformers ``CLIPModel`` directory with its tokenizer (OpenAI CLIP, or PickScore, which is a fine-tuned CLIP-H
  whose scaled similarity is the preference score Flow-GRPO trains SD3 on). Nothing is downloaded.

``clip_score`` is a batch function (``worker.reward.reward_type=batch``): the images (every frame of a video, averaged
per sample) are resized to the vision tower's input size, normalised with the mean/std of the directory's
``preprocessor_config.json`` (CLIP's when absent), embedded with the prompts, and each sample's score is the cosine
similarity times the model's ``logit_scale`` (PickScore's reported score), times ``scale``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPModel

from longrl.flow.rewards import MediaRewardInput

__all__ = ["clip_score"]

# Scores a whole batch in one model call.
REWARD_TYPE = "batch"

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=2)
def _load(model_dir: str, device: str) -> tuple[CLIPModel, object, torch.Tensor, torch.Tensor]:
    """The model, tokenizer and normalisation of ``model_dir``, loaded once per process."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"clip_score: {path} is not a model directory (no config.json); pass "
                                "worker.reward.reward_function_kwargs.model_dir=<a local CLIPModel directory>")
    model = CLIPModel.from_pretrained(str(path)).requires_grad_(False).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    mean, std = _CLIP_MEAN, _CLIP_STD
    preprocessor = path / "preprocessor_config.json"
    if preprocessor.is_file():
        config = json.loads(preprocessor.read_text())
        mean, std = config.get("image_mean", mean), config.get("image_std", std)
    return model, tokenizer, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def clip_score(reward_inputs: Sequence[MediaRewardInput], model_dir: str, scale: float = 1.0,
               device: str = "cpu") -> list[dict[str, float]]:
    """``logit_scale x cos(image, prompt) x scale`` per sample (the mean over a video's frames)."""
    model, tokenizer, mean, std = _load(str(model_dir), device)
    size = model.config.vision_config.image_size
    frames, owners = [], []
    for index, item in enumerate(reward_inputs):
        media = item["media"].float()
        clips = media.unsqueeze(0) if media.dim() == 3 else media.transpose(0, 1)
        frames.append(clips)
        owners += [index] * len(clips)
    pixels = torch.nn.functional.interpolate(torch.cat(frames), size=(size, size), mode="bicubic",
                                             align_corners=False).clamp(0, 1)
    images = model.get_image_features(pixel_values=((pixels - mean) / std).to(device))
    text = tokenizer([item["prompt"] for item in reward_inputs], padding=True, truncation=True, return_tensors="pt")
    prompts = model.get_text_features(**{k: v.to(device) for k, v in text.items()})
    images = torch.nn.functional.normalize(_embeds(images), dim=-1)
    prompts = torch.nn.functional.normalize(_embeds(prompts), dim=-1)
    similarity = (images * prompts[torch.tensor(owners)]).sum(-1).cpu() * model.logit_scale.exp().cpu() * scale
    totals = torch.zeros(len(reward_inputs)).index_add_(0, torch.tensor(owners), similarity)
    counts = torch.bincount(torch.tensor(owners), minlength=len(reward_inputs))
    return [{"overall": float(total / count)} for total, count in zip(totals, counts)]


def _embeds(output: torch.Tensor | object) -> torch.Tensor:
    """transformers returns the projected features as a tensor, or (newer releases) inside an output's pooler."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
