"""HF rollout of Qwen2.5-Omni prompts with a video and an audio: the greedy tokens are the model's own greedy decoding
(one full forward per token over the raw pixels and audio frames), whether the rollout runs the towers or splices
MR-SP stage-1 features; the rollout's log-probs are what the actor's scoring path gives for the same rows.

Two prompts with audio of different lengths are batched (left-padded prompts, right-padded audio frames). Sharper
random weights (``tests/sharp_weights.py``) make the tokens depend on the inputs; the negative control shows they
depend on the audio.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.mrsp.audio import append_row_audio, encode_row_audio
from longrl.workers.rollout.hf import HFRollout
from prompt_cases import check_greedy_rollout, check_rollout_log_probs_equal_actor_scores, prompt_sample
from sharp_weights import sharp_weights

FAMILY = "qwen2_5_omni"
MAX_NEW = 8
AUDIO_SECONDS = (1.0, 0.63)


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(0)
    samples = []
    for uid, seconds in zip("ab", AUDIO_SECONDS):
        video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (4, 56, 56, 3), dtype=np.uint8),
                             np.arange(4) / 2.0, 2.0, 4)
        audio = (0.1 * rng.standard_normal(round(seconds * 16_000))).astype(np.float32)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"},
                                                 {"type": "text", "text": "What do you hear?"}]}]
        samples.append(prompt_sample(uid, adapter.encode(processor, messages, video, audio=audio), answer=uid.upper()))
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id
    eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad)
    # float64, so the cached decode and the full forwards agree to roundoff far below the tolerances.
    rollout = HFRollout(model_dir, dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))

    def stage1(rows: list[dict]) -> list[torch.Tensor | None]:
        groups, cpu = build_sp_groups(1), torch.device("cpu")
        with torch.no_grad():
            return append_row_audio(encode_row_videos(adapter.video_encoder(rollout.model), rows, groups, cpu),
                                    encode_row_audio(adapter.audio_encoder(rollout.model), rows, groups, cpu))

    return adapter, rollout, samples, eos, pad, stage1


def test_greedy_rollout_equals_forward_greedy_from_towers_and_from_stage1_features(setup):
    adapter, rollout, samples, eos, pad, stage1 = setup
    # Negative control: other audio frames in place of the audio change what is generated.
    check_greedy_rollout(rollout, samples, eos, pad, MAX_NEW, stage1,
                         blank=lambda inputs: {**inputs, "input_features": torch.zeros_like(inputs["input_features"])})


def test_rollout_log_probs_equal_the_actor_scores_of_the_same_rows(setup):
    adapter, rollout, samples, eos, pad, stage1 = setup
    check_rollout_log_probs_equal_actor_scores(adapter, rollout, samples, eos, pad, MAX_NEW, stage1)
