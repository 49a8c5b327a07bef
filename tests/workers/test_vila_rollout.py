"""HF rollout of VILA video prompts: the greedy tokens are the model's own greedy decoding (one full forward per token
over the raw pixels), whether the rollout runs the tower or splices MR-SP stage-1 features; the rollout's log-probs
are what the actor's scoring path gives for the same rows.

Two prompts of 3 and 6 frames are batched (left-padded). Sharper random weights (``tests/sharp_weights.py``) make the
tokens depend on the inputs; the negative control shows they depend on the frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.workers.rollout.hf import HFRollout
from prompt_cases import check_greedy_rollout, check_rollout_log_probs_equal_actor_scores, prompt_sample
from sharp_weights import sharp_weights

FAMILY = "vila"
MAX_NEW = 8


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(0)
    samples = []
    for uid, frames, question in (("a", 3, "What happens in the video?"),
                                  ("b", 6, "Which object appears first, and where is it placed?")):
        video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, 56, 84, 3), dtype=np.uint8),
                             np.arange(frames) / 2.0, 2.0, frames)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        samples.append(prompt_sample(uid, adapter.encode(processor, messages, video), question, uid.upper()))
    tokenizer = processor.tokenizer
    eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id)
    # float64, so the cached decode and the full forwards agree to roundoff far below the tolerances.
    rollout = HFRollout(model_dir, dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))

    def stage1(rows: list[dict]) -> list[torch.Tensor | None]:
        with torch.no_grad():
            return encode_row_videos(adapter.video_encoder(rollout.model), rows, build_sp_groups(1),
                                     torch.device("cpu"))

    return adapter, rollout, samples, eos, tokenizer.pad_token_id, stage1


def test_greedy_rollout_equals_forward_greedy_from_the_tower_and_from_stage1_features(setup):
    adapter, rollout, samples, eos, pad, stage1 = setup
    model = rollout.model
    assert adapter.media_token_ids(model.config) == [model.config.image_token_id, model.config.video_token_id]
    # Negative control: black frames in place of the video change what is generated.
    check_greedy_rollout(rollout, samples, eos, pad, MAX_NEW, stage1,
                         blank=lambda inputs: {**inputs, "pixel_values_videos": torch.zeros_like(
                             inputs["pixel_values_videos"])})


def test_rollout_log_probs_equal_the_actor_scores_of_the_same_rows(setup):
    adapter, rollout, samples, eos, pad, stage1 = setup
    check_rollout_log_probs_equal_actor_scores(adapter, rollout, samples, eos, pad, MAX_NEW, stage1)
