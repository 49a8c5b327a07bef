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

from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.mrsp.audio import append_row_audio, encode_row_audio
from longrl.protocol import TOKEN_KEYS, VIDEO_EMBEDS, Batch
from longrl.workers.logprob import response_log_probs
from longrl.workers.rollout.base import media_token_ids
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import merge_vision_inputs, placeholder_tokens, position_inputs, without_pixels
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
        inputs = adapter.encode(processor, messages, video, audio=audio)
        samples.append({"uid": uid, "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
                        "question": "q", "options": None, "answer": uid.upper(), "reasoning": None, "task": "t",
                        "video_path": None, "timestamps": None})
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id
    eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad)
    # float64, so the cached decode and the full forwards agree to roundoff far below the tolerances.
    rollout = HFRollout(model_dir, dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    return adapter, rollout, samples, eos, pad


def _batch(samples: list[dict], pad: int) -> Batch:
    collated = collate_left_padded(samples, pad)
    return Batch.from_dict({key: collated[key] for key in TOKEN_KEYS if key in collated},
                           {key: collated[key] for key in ("uid", "vision_inputs", "answer")})


def _params(eos, pad, **overrides) -> SamplingParams:
    fields = dict(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=MAX_NEW, eos_token_ids=eos,
                  pad_token_id=pad, seed=7)
    return SamplingParams(**{**fields, **overrides})


def _forward_greedy(model, inputs: dict, eos, suppressed: list[int]) -> list[int]:
    """Greedy decoding by full forwards of the growing sequence (the model's own towers, splicing and positions),
    media tokens excluded as the rollout excludes them."""
    ids = inputs["input_ids"][None]
    vision = {key: value for key, value in inputs.items() if key not in TOKEN_KEYS}
    out: list[int] = []
    with torch.no_grad():
        for _ in range(MAX_NEW):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **vision).logits[0, -1]
            logits[suppressed] = -torch.inf
            token = int(logits.argmax())
            out.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    return out


def _tokens(out: Batch, row: int) -> list[int]:
    return out.tensors["responses"][row][out.tensors["response_mask"][row].bool()].tolist()


def _stage1(adapter, model, rows: list[dict]) -> list[torch.Tensor]:
    groups, cpu = build_sp_groups(1), torch.device("cpu")
    with torch.no_grad():
        return append_row_audio(encode_row_videos(adapter.video_encoder(model), rows, groups, cpu),
                                encode_row_audio(adapter.audio_encoder(model), rows, groups, cpu))


def test_greedy_rollout_equals_forward_greedy_from_towers_and_from_stage1_features(setup):
    adapter, rollout, samples, eos, pad = setup
    model = rollout.model
    suppressed = media_token_ids(model.config)
    prompts = _batch(samples, pad)
    from_towers = rollout.generate(prompts, _params(eos, pad))
    rows = list(prompts.non_tensors["vision_inputs"])
    with_features = prompts.with_non_tensors(**{VIDEO_EMBEDS: _stage1(adapter, model, rows),
                                                "vision_inputs": [without_pixels(row) for row in rows]})
    from_features = rollout.generate(with_features, _params(eos, pad))
    changed = []
    for row, sample in enumerate(samples):
        expected = _forward_greedy(model, sample["inputs"], eos, suppressed)
        assert _tokens(from_towers, row) == expected
        assert _tokens(from_features, row) == expected
        silent = {**sample["inputs"], "input_features": torch.zeros_like(sample["inputs"]["input_features"])}
        changed.append(_forward_greedy(model, silent, eos, suppressed) != expected)
    # Negative control: other audio frames in place of the audio change what is generated.
    assert any(changed)


def test_rollout_log_probs_equal_the_actor_scores_of_the_same_rows(setup):
    adapter, rollout, samples, eos, pad = setup
    model = rollout.model
    out = rollout.generate(_batch(samples, pad), _params(eos, pad, n=2, temperature=1.0))
    rows = list(out.non_tensors["vision_inputs"])
    tokens = {"input_ids": out.tensors["input_ids"], "attention_mask": out.tensors["attention_mask"]}
    features = torch.cat(_stage1(adapter, model, rows))
    kwargs = {**position_inputs(rows), **adapter.encoder_kwargs(
        model, features, placeholder_tokens(tokens["input_ids"], adapter.media_placeholder_ids(model)))}
    with torch.no_grad():
        actor = response_log_probs(model, tokens, kwargs, out.tensors["responses"]).log_probs
        raw = response_log_probs(model, tokens, merge_vision_inputs(rows), out.tensors["responses"]).log_probs
    mask = out.tensors["response_mask"].bool()
    assert mask.sum() > 2 * len(rows)
    torch.testing.assert_close(out.tensors["rollout_log_probs"][mask], actor[mask], atol=1e-9, rtol=0)
    torch.testing.assert_close(raw[mask], actor[mask], atol=1e-9, rtol=0)
