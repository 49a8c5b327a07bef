"""Rollout prompt rows -> vLLM prompts, in the two forms the vLLM engine takes (no vLLM import here).

``multi_modal``: the row's token ids and, for a row with video, its precomputed features as ``multi_modal_data``
embeddings, in the form the model family's adapter gives (``vllm_video_prompt``: the video's placeholders collapsed
as vLLM's own processor expects them, the grid beside the features). vLLM then places the features and computes the
positions as for a video it encoded itself, but its vision tower never runs.

``embeds``: one ``prompt_embeds`` tensor per row, the text embeddings with the video features spliced in. vLLM
positions prompt embeddings as text (1-D), so this form is exact only for families with 1-D positions; a row
with video of a 3-D-position family is refused rather than generated from the wrong positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from longrl.config.validate import ROLLOUT_PROMPT_INPUTS as PROMPT_INPUTS
from longrl.models import ModelAdapter
from longrl.protocol import ATTENTION_MASK, INPUT_IDS, VISION_INPUTS, Batch
from longrl.workers.vision_inputs import VIDEO_EMBEDS, splice_features, without_pixels

__all__ = ["PROMPT_INPUTS", "vllm_prompts"]


def vllm_prompts(
    prompts: Batch,
    mode: str,
    adapter: ModelAdapter,
    processor: Any,
    embed: Callable[[torch.Tensor], torch.Tensor] | None,
) -> list[dict[str, Any]]:
    """One vLLM prompt dict per row of ``prompts`` (left-padded ``input_ids`` / ``attention_mask``), for the family of
    ``adapter`` (``processor`` is its processor).

    Rows with video must carry their features (``video_embeds``, MR-SP stage 1). ``embed`` maps token ids to
    text embeddings (needed by ``embeds`` only).
    """
    if mode not in PROMPT_INPUTS:
        raise ValueError(f"worker.rollout.prompt_input must be one of {PROMPT_INPUTS}, got {mode!r}")
    keys = adapter.input_keys
    ids, mask = prompts.tensors[INPUT_IDS], prompts.tensors[ATTENTION_MASK].bool()
    features = list(prompts.non_tensors.get(VIDEO_EMBEDS, [None] * len(prompts)))
    vision_rows = list(prompts.non_tensors.get(VISION_INPUTS, [{}] * len(prompts)))
    out = []
    for row in range(len(prompts)):
        media = keys.media(vision_rows[row])
        if media - {"video"}:
            raise NotImplementedError(f"prompt row {row} holds {', '.join(sorted(media - {'video'}))}; the vLLM engine "
                                      "here takes video features only, so such rows are rolled out with "
                                      "worker.rollout.name=hf")
        tokens = ids[row][mask[row]]
        has_video = "video" in media
        if has_video and features[row] is None:
            raise ValueError(f"prompt row {row} holds video placeholders but no precomputed video features "
                             f"({VIDEO_EMBEDS}); the vLLM engine never encodes video itself")
        if mode == "embeds":
            if has_video and adapter.positions_3d:
                raise ValueError(
                    f"prompt row {row} has a video, and this model family positions video tokens in 3-D (mrope); vLLM "
                    "positions prompt embeddings as text, so the output would be wrong. Use "
                    "worker.rollout.prompt_input=multi_modal (vLLM still reuses the MR-SP features)")
            assert embed is not None, "embeds mode needs the text embedding"
            embeds = embed(tokens)
            if has_video:
                embeds = splice_features(embeds, tokens, processor.video_token_id, features[row])
            out.append({"prompt_embeds": embeds})
        elif has_video:
            out.append(adapter.vllm_video_prompt(processor, tokens.tolist(), features[row],
                                                 without_pixels(vision_rows[row], keys)))
        else:
            out.append({"prompt_token_ids": tokens.tolist()})
    return out
