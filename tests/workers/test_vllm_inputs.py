"""Prompt rows -> vLLM prompt dicts (no vLLM needed): collapsed placeholders + features, or spliced embeddings."""

from __future__ import annotations

import pytest
import torch

from longrl.models import get_adapter
from longrl.models._qwen_vl import collapse_runs
from longrl.protocol import Batch
from longrl.workers.rollout.vllm_inputs import vllm_prompts
from longrl.workers.vision_inputs import VIDEO_EMBEDS

PAD = 0


@pytest.fixture(scope="module")
def qwen(tiny_model_dir):
    """Qwen2.5-VL (3-D positions) and its processor."""
    adapter = get_adapter("qwen2_5_vl")
    return adapter, adapter.load_processor(tiny_model_dir("qwen2_5_vl"))


@pytest.fixture(scope="module")
def vila(tiny_model_dir):
    """VILA (1-D positions) and its processor."""
    adapter = get_adapter("vila")
    return adapter, adapter.load_processor(tiny_model_dir("vila"))


def _prompts(video: int) -> Batch:
    """Row 0: text only, left-padded. Row 1: a 3-token video (placeholder id ``video``) between text."""
    ids = torch.tensor([[PAD, PAD, PAD, 5, 6], [4, video, video, video, 7]])
    mask = (ids != PAD).long()
    features = [None, torch.arange(6, dtype=torch.float).view(3, 2) + 100]
    grid = {"video_grid_thw": torch.tensor([[1, 2, 6]]), "second_per_grid_ts": torch.tensor([1.0])}
    return Batch.from_dict({"input_ids": ids, "attention_mask": mask},
                           {"uid": ["t", "v"], "vision_inputs": [{}, grid], VIDEO_EMBEDS: features})


def test_collapse_runs_keeps_one_token_per_run():
    assert collapse_runs([1, 9, 9, 9, 2, 9, 3, 9, 9], 9) == [1, 9, 2, 9, 3, 9]
    assert collapse_runs([], 9) == []


def test_multi_modal_prompts_carry_ids_without_padding_and_the_features(qwen):
    adapter, processor = qwen
    video_id = processor.video_token_id
    text, video = vllm_prompts(_prompts(video_id), "multi_modal", adapter, processor, embed=None)
    assert text == {"prompt_token_ids": [5, 6]}
    assert video["prompt_token_ids"] == [4, video_id, 7]
    data = video["multi_modal_data"]["video"]
    assert torch.equal(data["video_embeds"], _prompts(video_id).non_tensors[VIDEO_EMBEDS][1])
    assert data["video_grid_thw"].tolist() == [[1, 2, 6]] and data["second_per_grid_ts"].tolist() == [1.0]


def test_embeds_prompts_splice_the_features_over_the_placeholders(vila):
    adapter, processor = vila
    table = torch.arange(2 * (processor.video_token_id + 1), dtype=torch.float).view(-1, 2)
    prompts = _prompts(processor.video_token_id)
    prompts = prompts.with_non_tensors(vision_inputs=[{}, {"video_grid_thw": torch.tensor([[3, 1, 1]])}])
    text, video = vllm_prompts(prompts, "embeds", adapter, processor, embed=lambda ids: table[ids])
    assert torch.equal(text["prompt_embeds"], table[torch.tensor([5, 6])])
    expected = torch.cat([table[[4]], prompts.non_tensors[VIDEO_EMBEDS][1], table[[7]]])
    assert torch.equal(video["prompt_embeds"], expected)


def test_refusals_name_the_row_and_the_fix(qwen):
    adapter, processor = qwen
    prompts = _prompts(processor.video_token_id)
    with pytest.raises(ValueError, match=r"row 1 has a video.*mrope.*prompt_input=multi_modal"):
        vllm_prompts(prompts, "embeds", adapter, processor, embed=lambda ids: torch.zeros(len(ids), 2))
    missing = prompts.with_non_tensors(**{VIDEO_EMBEDS: [None, None]})
    with pytest.raises(ValueError, match=r"prompt row 1 holds video placeholders but no precomputed video features"):
        vllm_prompts(missing, "multi_modal", adapter, processor, embed=None)
    with pytest.raises(ValueError, match=r"prompt_input must be one of \('multi_modal', 'embeds'\), got 'pixels'"):
        vllm_prompts(prompts, "pixels", adapter, processor, embed=None)


def test_image_rows_are_refused_with_the_engine_to_use(qwen):
    adapter, processor = qwen
    prompts = _prompts(processor.video_token_id)
    rows = list(prompts.non_tensors["vision_inputs"])
    rows[0] = {"image_grid_thw": torch.tensor([[1, 2, 2]])}
    with_image = prompts.with_non_tensors(vision_inputs=rows)
    with pytest.raises(NotImplementedError, match=r"row 0 holds image.*worker\.rollout\.name=hf"):
        vllm_prompts(with_image, "multi_modal", adapter, processor, embed=None)
