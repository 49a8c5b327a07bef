"""Rollout prompt rows -> vLLM prompts, in the two forms the vLLM engine takes (no vLLM import here).

``multi_modal``: the row's token ids with each run of video placeholders collapsed to one (vLLM expands a
placeholder itself from the grid), plus the row's precomputed video features as ``multi_modal_data`` embeddings
(``video_embeds`` + ``video_grid_thw`` [+ ``second_per_grid_ts``]). vLLM then places the features and computes
3-D mrope positions from the grid, exactly as for a video it encoded itself, but its vision tower never runs.

``embeds``: one ``prompt_embeds`` tensor per row, the text embeddings with the video features spliced in. vLLM
positions prompt embeddings as text (1-D), so this form is exact only for families with 1-D positions; a row
with video of a 3-D-position family is refused rather than generated from the wrong positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from longrl.config.validate import ROLLOUT_PROMPT_INPUTS as PROMPT_INPUTS
from longrl.protocol import ATTENTION_MASK, INPUT_IDS, VISION_INPUTS, Batch
from longrl.workers.vision_inputs import VIDEO_EMBEDS, splice_features

__all__ = ["PROMPT_INPUTS", "collapse_runs", "vllm_prompts"]

# Grid keys vLLM's Qwen-VL models read for precomputed video features.
_VIDEO_METADATA_KEYS = ("video_grid_thw", "second_per_grid_ts")


def collapse_runs(token_ids: Sequence[int], token_id: int) -> list[int]:
    """``token_ids`` with every run of consecutive ``token_id`` reduced to a single one."""
    out: list[int] = []
    for token in token_ids:
        if token == token_id and out and out[-1] == token_id:
            continue
        out.append(token)
    return out


def vllm_prompts(
    prompts: Batch,
    mode: str,
    video_token_id: int | None,
    embed: Callable[[torch.Tensor], torch.Tensor] | None,
    positions_3d: bool,
) -> list[dict[str, Any]]:
    """One vLLM prompt dict per row of ``prompts`` (left-padded ``input_ids`` / ``attention_mask``).

    Rows with video must carry their features (``video_embeds``, MR-SP stage 1). ``embed`` maps token ids to
    text embeddings (needed by ``embeds`` only).
    """
    if mode not in PROMPT_INPUTS:
        raise ValueError(f"worker.rollout.prompt_input must be one of {PROMPT_INPUTS}, got {mode!r}")
    ids, mask = prompts.tensors[INPUT_IDS], prompts.tensors[ATTENTION_MASK].bool()
    features = list(prompts.non_tensors.get(VIDEO_EMBEDS, [None] * len(prompts)))
    vision_rows = list(prompts.non_tensors.get(VISION_INPUTS, [{}] * len(prompts)))
    out = []
    for row in range(len(prompts)):
        if "image_grid_thw" in vision_rows[row]:
            raise NotImplementedError(f"prompt row {row} holds images; the vLLM engine here takes video features only, "
                                      "so image rows are rolled out with worker.rollout.name=hf")
        if "feature_attention_mask" in vision_rows[row]:
            raise NotImplementedError(f"prompt row {row} holds audio; the vLLM engine here takes video features only, "
                                      "so audio rows are rolled out with worker.rollout.name=hf")
        tokens = ids[row][mask[row]]
        has_video = video_token_id is not None and bool((tokens == video_token_id).any())
        if has_video and features[row] is None:
            raise ValueError(f"prompt row {row} holds video placeholders but no precomputed video features "
                             f"({VIDEO_EMBEDS}); the vLLM engine never encodes video itself")
        if mode == "embeds":
            if has_video and positions_3d:
                raise ValueError(
                    f"prompt row {row} has a video, and this model family positions video tokens in 3-D (mrope); vLLM "
                    "positions prompt embeddings as text, so the output would be wrong. Use "
                    "worker.rollout.prompt_input=multi_modal (vLLM still reuses the MR-SP features)")
            assert embed is not None, "embeds mode needs the text embedding"
            embeds = embed(tokens)
            if has_video:
                embeds = splice_features(embeds, tokens, video_token_id, features[row])
            out.append({"prompt_embeds": embeds})
            continue
        prompt: dict[str, Any] = {"prompt_token_ids": tokens.tolist()}
        if has_video:
            prompt["prompt_token_ids"] = collapse_runs(prompt["prompt_token_ids"], video_token_id)
            metadata = {key: vision_rows[row][key] for key in _VIDEO_METADATA_KEYS if key in vision_rows[row]}
            prompt["multi_modal_data"] = {"video": {"video_embeds": features[row], **metadata}}
        out.append(prompt)
    return out
