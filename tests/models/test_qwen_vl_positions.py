"""Qwen-VL 3-D positions: text after a video resumes after the video's last position (the published rule)."""

from __future__ import annotations

import pytest
import torch

from longrl.models import get_adapter

TEXT, VIDEO = 0, 2


def _row(model, before: int, grid: tuple[int, int, int], after: int, left_pad: int = 0):
    merge = model.config.vision_config.spatial_merge_size
    video_tokens = grid[0] * grid[1] * grid[2] // merge**2
    types = [TEXT] * left_pad + [TEXT] * before + [VIDEO] * video_tokens + [TEXT] * after
    mask = [0] * left_pad + [1] * (len(types) - left_pad)
    video_id = model.config.video_token_id
    ids = [0] * left_pad + [1] * before + [video_id] * video_tokens + [1] * after
    return torch.tensor([ids]), torch.tensor([types]), torch.tensor([mask])


@pytest.mark.parametrize("family, temporal", [("qwen2_5_vl", [3, 3, 3, 3, 5, 5, 5, 5]),
                                              ("qwen2_vl", [3, 3, 3, 3, 4, 4, 4, 4])])
def test_text_after_a_long_video_starts_after_its_last_temporal_position(tiny_model_dir, family, temporal):
    """Two temporal patches of 2x2 merged tokens after 3 text tokens. Qwen2.5-VL spaces temporal patches by
    tokens_per_second (2) x seconds per patch (1.0); Qwen2-VL by one. The 3 text tokens after the video then start at
    max(position) + 1, not at 3 + max(h, w) = 5 (transformers 5.x), which would sit inside the video."""
    model = get_adapter(family).load_model(tiny_model_dir(family))
    ids, types, mask = _row(model, before=3, grid=(2, 4, 4), after=3, left_pad=2)
    extra = {"second_per_grid_ts": torch.tensor([1.0])} if family == "qwen2_5_vl" else {}
    positions, deltas = model.model.get_rope_index(ids, types, video_grid_thw=torch.tensor([[2, 4, 4]]),
                                                   attention_mask=mask, **extra)
    after = max(temporal) + 1
    expected = [
        [0, 0] + [0, 1, 2] + temporal + [after, after + 1, after + 2],
        [0, 0] + [0, 1, 2] + [3, 3, 4, 4] * 2 + [after, after + 1, after + 2],
        [0, 0] + [0, 1, 2] + [3, 4, 3, 4] * 2 + [after, after + 1, after + 2],
    ]
    assert positions[:, 0].tolist() == expected
    assert deltas.tolist() == [[after + 3 - ids.shape[1]]]


def test_grid_and_tokens_that_disagree_are_refused(tiny_model_dir):
    model = get_adapter("qwen2_vl").load_model(tiny_model_dir("qwen2_vl"))
    ids, types, mask = _row(model, before=1, grid=(2, 4, 4), after=1)
    with pytest.raises(ValueError, match=r"row 0: a vision segment of 8 tokens does not match its grid \(4 merged"):
        model.model.get_rope_index(ids, types, video_grid_thw=torch.tensor([[1, 4, 4]]), attention_mask=mask)


def test_a_fractional_time_interval_truncates_each_temporal_position(tiny_model_dir):
    """0.75 s per temporal patch at 2 tokens per second: the patches sit 1.5 apart, so at int(0, 1.5, 3.0) = 0, 1, 3
    after the text (vLLM's rule). transformers 5.17's own vision positions fail here on mixed dtypes."""
    model = get_adapter("qwen2_5_vl").load_model(tiny_model_dir("qwen2_5_vl"))
    assert model.config.vision_config.tokens_per_second == 2
    ids, types, mask = _row(model, before=2, grid=(3, 4, 4), after=1)
    positions, _ = model.model.get_rope_index(ids, types, video_grid_thw=torch.tensor([[3, 4, 4]]),
                                              attention_mask=mask, second_per_grid_ts=torch.tensor([0.75]))
    assert positions.dtype == ids.dtype
    assert positions[0, 0].tolist() == [0, 1] + [2] * 4 + [3] * 4 + [5] * 4 + [6]
