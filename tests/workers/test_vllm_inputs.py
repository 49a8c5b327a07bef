"""Prompt rows -> vLLM prompt dicts (no vLLM needed): collapsed placeholders + features, or spliced embeddings."""

from __future__ import annotations

import pytest
import torch

from longrl.protocol import Batch
from longrl.workers.rollout.vllm_inputs import collapse_runs, vllm_prompts
from longrl.workers.vision_inputs import VIDEO_EMBEDS

VIDEO = 9
PAD = 0


def _prompts() -> Batch:
    """Row 0: text only, left-padded. Row 1: a 3-token video between text."""
    ids = torch.tensor([[PAD, PAD, PAD, 5, 6], [4, VIDEO, VIDEO, VIDEO, 7]])
    mask = (ids != PAD).long()
    features = [None, torch.arange(6, dtype=torch.float).view(3, 2) + 100]
    grid = {"video_grid_thw": torch.tensor([[1, 2, 6]]), "second_per_grid_ts": torch.tensor([1.0])}
    return Batch.from_dict({"input_ids": ids, "attention_mask": mask},
                           {"uid": ["t", "v"], "vision_inputs": [{}, grid], VIDEO_EMBEDS: features})


def test_collapse_runs_keeps_one_token_per_run():
    assert collapse_runs([1, 9, 9, 9, 2, 9, 3, 9, 9], 9) == [1, 9, 2, 9, 3, 9]
    assert collapse_runs([], 9) == []


def test_multi_modal_prompts_carry_ids_without_padding_and_the_features():
    text, video = vllm_prompts(_prompts(), "multi_modal", VIDEO, embed=None, positions_3d=True)
    assert text == {"prompt_token_ids": [5, 6]}
    assert video["prompt_token_ids"] == [4, VIDEO, 7]
    data = video["multi_modal_data"]["video"]
    assert torch.equal(data["video_embeds"], _prompts().non_tensors[VIDEO_EMBEDS][1])
    assert data["video_grid_thw"].tolist() == [[1, 2, 6]] and data["second_per_grid_ts"].tolist() == [1.0]


def test_embeds_prompts_splice_the_features_over_the_placeholders():
    table = torch.arange(20, dtype=torch.float).view(10, 2)
    prompts = _prompts()
    text, video = vllm_prompts(prompts, "embeds", VIDEO, embed=lambda ids: table[ids], positions_3d=False)
    assert torch.equal(text["prompt_embeds"], table[torch.tensor([5, 6])])
    expected = torch.cat([table[[4]], prompts.non_tensors[VIDEO_EMBEDS][1], table[[7]]])
    assert torch.equal(video["prompt_embeds"], expected)


def test_refusals_name_the_row_and_the_fix():
    prompts = _prompts()
    with pytest.raises(ValueError, match=r"row 1 has a video.*mrope.*prompt_input=multi_modal"):
        vllm_prompts(prompts, "embeds", VIDEO, embed=lambda ids: torch.zeros(len(ids), 2), positions_3d=True)
    missing = prompts.with_non_tensors(**{VIDEO_EMBEDS: [None, None]})
    with pytest.raises(ValueError, match=r"prompt row 1 holds video placeholders but no precomputed video features"):
        vllm_prompts(missing, "multi_modal", VIDEO, embed=None, positions_3d=True)
    with pytest.raises(ValueError, match=r"prompt_input must be one of \('multi_modal', 'embeds'\), got 'pixels'"):
        vllm_prompts(prompts, "pixels", VIDEO, embed=None, positions_3d=True)


def test_image_rows_are_refused_with_the_engine_to_use():
    prompts = _prompts()
    rows = list(prompts.non_tensors["vision_inputs"])
    rows[0] = {"image_grid_thw": torch.tensor([[1, 2, 2]])}
    with_image = prompts.with_non_tensors(vision_inputs=rows)
    with pytest.raises(NotImplementedError, match=r"row 0 holds images.*worker\.rollout\.name=hf"):
        vllm_prompts(with_image, "multi_modal", VIDEO, embed=None, positions_3d=True)
