"""Qwen3-VL (dense): the timestamped video prompt, deepstack features through the precomputed path, the embedding
cache's rebuilt prompt, the prompt-length count and the vLLM prompt form.

The model is the real transformers code at tiny sizes (3 tower blocks, 2 deepstack levels, 2 decoder layers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.data.video import DecodedVideo
from longrl.embeds.store import CachedVideo, EmbeddingStore
from longrl.models import get_adapter
from longrl.models.qwen3_vl import patch_times
from longrl.protocol import TOKEN_KEYS
from longrl.workers.logprob import response_log_probs
from longrl.workers.vision_inputs import placeholder_tokens, position_inputs, without_pixels

FAMILY = "qwen3_vl"
QUESTION = "What happens first?"


@pytest.fixture(scope="module")
def qwen3(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    adapter = get_adapter(FAMILY)
    return adapter, adapter.load_processor(model_dir), adapter.load_model(model_dir).eval()


def _messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]


def _video(times: list[float], height: int = 64, width: int = 96) -> DecodedVideo:
    frames = np.random.default_rng(len(times)).integers(0, 256, (len(times), height, width, 3), dtype=np.uint8)
    return DecodedVideo("clip.mp4", frames, np.asarray(times), 2.0, len(times))


def test_patch_times_average_each_patchs_first_and_last_frame():
    assert patch_times([0.0, 0.5, 1.0, 1.5, 2.0]) == [0.25, 1.25, 2.0]  # the last frame fills the last patch
    assert patch_times([3.0, 5.0]) == [4.0]


def test_video_prompt_is_timestamped_frames_in_place_of_the_video_item(qwen3):
    adapter, processor, _ = qwen3
    video = _video([0.0, 0.5, 1.0, 1.5, 10.0])  # patch times 0.25, 1.25, 10.0
    batch = adapter.encode(processor, _messages(), video)
    assert batch["video_grid_thw"].tolist() == [[3, 4, 6]]  # 64 x 96 px in 16 px patches, 2 x 3 once merged
    frame = "<|vision_start|>" + "<|video_pad|>" * 6 + "<|vision_end|>"
    expected = (f"<|im_start|>user\n<0.2 seconds>{frame}<1.2 seconds>{frame}<10.0 seconds>{frame}"
                f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert batch["input_ids"][0].tolist() == processor.tokenizer(expected)["input_ids"]
    video_id = processor.video_token_id
    assert torch.equal(batch["mm_token_type_ids"] == 2, batch["input_ids"] == video_id)
    assert not (batch["mm_token_type_ids"] == 1).any()


@pytest.mark.parametrize("times", [[0.0, 0.5, 1.0], [8.0, 9.5, 11.0, 12.5, 99.0, 101.0, 102.0]])
def test_prompt_length_arithmetic_equals_the_encoded_length(qwen3, times):
    """The dataset sizes prompts from frame times and sizes alone: the timestamps' tokens are counted too."""
    adapter, processor, _ = qwen3
    encoded = adapter.encode(processor, _messages(), _video(times, 32, 64))
    counted = adapter.count_video_tokens(processor, np.asarray(times), 32, 64)
    assert len(adapter.render_prompt_ids(processor, _messages())) - 1 + counted == encoded["input_ids"].shape[-1]


def _scored_video(adapter, processor) -> tuple[dict, list[dict], torch.Tensor]:
    """(prompt + response tokens, the prompt's vision rows, the response ids) of one four-frame video."""
    batch = adapter.encode(processor, _messages(), _video([0.0, 0.5, 1.0, 1.5]))
    responses = torch.tensor([[11, 12, 13, 14]])
    tails = {"input_ids": responses, "attention_mask": torch.ones_like(responses),
             "mm_token_type_ids": torch.zeros_like(responses)}
    tokens = {key: torch.cat([batch[key], tails[key]], 1) for key in TOKEN_KEYS}
    return tokens, [{key: value for key, value in batch.items() if key not in TOKEN_KEYS}], responses


def _feature_scores(adapter, model, tokens: dict, rows: list[dict], responses: torch.Tensor,
                    features: torch.Tensor) -> torch.Tensor:
    kwargs = {**position_inputs(rows, adapter.input_keys), **adapter.encoder_kwargs(
        model, features, placeholder_tokens(tokens["input_ids"], adapter.media_placeholder_ids(model)))}
    return response_log_probs(model, tokens, kwargs, responses).log_probs


def test_precomputed_deepstack_features_score_like_the_raw_pixels(qwen3):
    """The encoder's rows (merged features, then both deepstack levels) given through encoder_kwargs reproduce the
    forward over the raw pixels exactly; without their deepstack part the log-probs change."""
    adapter, processor, model = qwen3
    tokens, rows, responses = _scored_video(adapter, processor)
    hidden = model.config.text_config.hidden_size
    with torch.no_grad():
        features = adapter.video_encoder(model)(rows[0]["pixel_values_videos"], rows[0]["video_grid_thw"])
        assert features.shape == (2 * 2 * 3, 3 * hidden)
        raw = response_log_probs(model, tokens, rows[0], responses).log_probs
        torch.testing.assert_close(_feature_scores(adapter, model, tokens, rows, responses, features), raw,
                                   atol=0, rtol=0)
        flat = torch.cat([features[:, :hidden], torch.zeros_like(features[:, hidden:])], dim=-1)
        assert (_feature_scores(adapter, model, tokens, rows, responses, flat) - raw).abs().max() > 1e-3


def test_a_model_built_on_meta_takes_features_once_its_weights_arrive(qwen3, tiny_model_dir):
    """What ranks > 0 build under worker.*.fsdp.enable_rank0_init: the patched forward keeps no tensor made while
    the model was on meta, so after the weights arrive it scores precomputed features as the loaded model does."""
    adapter, processor, model = qwen3
    with torch.device("meta"):
        empty = adapter.build_empty_model(tiny_model_dir(FAMILY), torch.float32)
    empty.to_empty(device="cpu")
    empty.load_state_dict(model.state_dict())
    for name, buffer in model.named_buffers():
        empty.get_buffer(name).copy_(buffer)
    tokens, rows, responses = _scored_video(adapter, processor)
    with torch.no_grad():
        features = adapter.video_encoder(model)(rows[0]["pixel_values_videos"], rows[0]["video_grid_thw"])
        torch.testing.assert_close(_feature_scores(adapter, empty.eval(), tokens, rows, responses, features),
                                   _feature_scores(adapter, model, tokens, rows, responses, features), atol=0, rtol=0)


def test_the_embedding_cache_rebuilds_the_live_prompt_and_features(qwen3, tmp_path):
    adapter, processor, model = qwen3
    video = _video([0.0, 0.4, 0.8, 1.2, 1.6])
    live = adapter.encode(processor, _messages(), video)
    row = {key: value for key, value in live.items() if key not in TOKEN_KEYS}
    with torch.no_grad():
        features = adapter.video_encoder(model)(row["pixel_values_videos"], row["video_grid_thw"])
    store = EmbeddingStore(tmp_path)
    store.put("ab12", {"video": "clip"}, CachedVideo.from_row(features, without_pixels(row, adapter.input_keys),
                                                              video.timestamps))
    cached = store.get("ab12", {"video": "clip"})
    rebuilt = adapter.encode_from_cache(processor, _messages(), cached.positions, cached.timestamps.numpy())
    assert rebuilt.keys() == {*TOKEN_KEYS, "video_grid_thw"}
    for key, value in rebuilt.items():
        assert torch.equal(value, live[key]), key
    assert torch.equal(cached.features, features)
    with pytest.raises(ValueError, match="needs its frames' timestamps"):
        adapter.encode_from_cache(processor, _messages(), cached.positions, None)


def test_the_vllm_prompt_is_one_video_placeholder_with_the_features_grid_and_patch_times(qwen3):
    """vLLM expands one ``<|video_pad|>`` into the timestamped frames from the grid and the patch times it is given,
    read from the prompt."""
    adapter, processor, _ = qwen3
    video = _video([0.0, 0.5, 1.0, 1.5])
    batch = adapter.encode(processor, _messages(), video)
    features = torch.randn(12, 384)
    prompt = adapter.vllm_video_prompt(processor, batch["input_ids"][0].tolist(), features,
                                       {"video_grid_thw": batch["video_grid_thw"]})
    expected = processor.tokenizer(f"<|im_start|>user\n<|video_pad|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert prompt["prompt_token_ids"] == expected["input_ids"]
    data = prompt["multi_modal_data"]["video"]
    assert data["video_embeds"] is features and data["video_grid_thw"].tolist() == [[2, 4, 6]]
    # As the prompt prints them (0.25 s and 1.25 s), so vLLM prints the same; one row per video, like the grid.
    assert data["timestamps"].tolist() == [[0.2, 1.2]]


def test_image_prompts_are_the_processors_own(qwen3):
    """Images keep the template's markers around their placeholders; pixels, grids and tokens are the processor's."""
    adapter, processor, _ = qwen3
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": QUESTION}]}]
    batch = adapter.encode(processor, messages, None, images=images)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = processor(text=[text], images=images, do_resize=False, return_tensors="pt")
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key
    assert int((batch["mm_token_type_ids"] == 1).sum()) == 2 * adapter.count_image_tokens(32, 64)
