"""Tiny models of every family: offline loading with the Auto classes, video encoding, forward, seeding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from longrl.data.video import DecodedVideo
from longrl.models import adapter_for_model_dir, get_adapter

# The Qwen2 generation's layout (patch 14, one video segment) is checked position by position below; Qwen3-VL's
# timestamped frames in test_qwen3_vl.py.
QWEN2_VL_FAMILIES = ["qwen2_5_vl", "qwen2_vl"]
VL_FAMILIES = [*QWEN2_VL_FAMILIES, "qwen3_vl"]
TEXT_FAMILIES = ["qwen2", "qwen3"]
ALL_FAMILIES = [*TEXT_FAMILIES, *VL_FAMILIES]
QUESTION = "What happens first?"


def _sized_video(family, num_frames=5, rows=2, columns=3):
    """:func:`_video` of ``rows`` x ``columns`` merged patches of ``family``'s tower."""
    side = get_adapter(family).video_size_factor
    return _video(num_frames, rows * side, columns * side)


def _video(num_frames=5, height=56, width=84, source_num_frames=20, source_fps=10.0):
    """Random frames standing for a clip sampled from a 2 s source: sampled_fps = num_frames / 2."""
    frames = np.random.default_rng(7).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    timestamps = np.linspace(0.0, source_num_frames / source_fps, num_frames, endpoint=False)
    return DecodedVideo(
        path="clips/seven.mp4",
        frames=frames,
        timestamps=timestamps,
        source_fps=source_fps,
        source_num_frames=source_num_frames,
    )


def _video_messages():
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]


def _reference_patches(frames, mean, std, patch=14, merge=2, temporal=2):
    """Qwen-VL's patch rows computed position by position: a temporal patch pads with the last frame; rows
    run over (t, merge-block row, merge-block col, row in block, col in block), each patch flattened as
    (channel, frame, y, x)."""
    normalized = (frames.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    pad = -len(normalized) % temporal
    normalized = np.concatenate([normalized, np.repeat(normalized[-1:], pad, axis=0)])
    grid_t, grid_h, grid_w = len(normalized) // temporal, frames.shape[1] // patch, frames.shape[2] // patch
    rows = []
    for t in range(grid_t):
        for block_row in range(grid_h // merge):
            for block_col in range(grid_w // merge):
                for i in range(merge):
                    for j in range(merge):
                        y, x = (block_row * merge + i) * patch, (block_col * merge + j) * patch
                        cube = normalized[t * temporal : (t + 1) * temporal, y : y + patch, x : x + patch, :]
                        rows.append(cube.transpose(3, 0, 1, 2).reshape(-1))
    return np.stack(rows), (grid_t, grid_h, grid_w)


@pytest.mark.parametrize("family", QWEN2_VL_FAMILIES)
def test_vl_video_encoding_matches_an_independent_patchify(tiny_model_dir, family):
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    assert isinstance(processor, type(AutoProcessor.from_pretrained(str(model_dir))))
    video = _video()  # 5 frames: odd, not a multiple of the temporal patch size
    batch = adapter.encode(processor, _video_messages(), video)

    vp = processor.video_processor
    expected_pixels, grid = _reference_patches(video.frames, vp.image_mean, vp.image_std)
    assert grid == (3, 4, 6)
    assert batch["video_grid_thw"].tolist() == [list(grid)]
    assert tuple(batch["pixel_values_videos"].shape) == (3 * 4 * 6, 3 * 2 * 14 * 14)
    np.testing.assert_allclose(batch["pixel_values_videos"].numpy(), expected_pixels, atol=1e-5)

    tokenizer = processor.tokenizer
    video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    input_ids = batch["input_ids"]
    num_video_tokens = 3 * 4 * 6 // 2**2
    assert int((input_ids == video_token_id).sum()) == num_video_tokens == 18
    expanded = (
        "<|im_start|>user\n<|vision_start|>" + "<|video_pad|>" * num_video_tokens + "<|vision_end|>"
        f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert input_ids[0].tolist() == tokenizer(expanded)["input_ids"]
    assert batch["attention_mask"].tolist() == [[1] * input_ids.shape[1]]
    # the model needs these to place the video tokens on the 3-D mrope grid
    assert torch.equal(batch["mm_token_type_ids"] != 0, input_ids == video_token_id)


def test_qwen2_5_vl_time_per_temporal_patch_comes_from_the_sampled_fps(tiny_model_dir):
    adapter = get_adapter("qwen2_5_vl")
    processor = adapter.load_processor(tiny_model_dir("qwen2_5_vl"))
    video = _video(num_frames=5)  # 5 frames over a 2 s source: 2.5 fps, 2 frames per temporal patch
    assert video.sampled_fps == pytest.approx(2.5)
    batch = adapter.encode(processor, _video_messages(), video)
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / 2.5])


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vl_forward_on_a_video_prompt(tiny_model_dir, family):
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    model = adapter.load_model(model_dir)
    assert isinstance(model, type(AutoModelForImageTextToText.from_pretrained(str(model_dir))))
    assert next(model.parameters()).dtype == torch.float32
    batch = adapter.encode(adapter.load_processor(model_dir), _video_messages(), _sized_video(family, num_frames=3))
    with torch.no_grad():
        logits = model(**batch).logits
    assert tuple(logits.shape) == (1, batch["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vl_generates_from_a_video_prompt(tiny_model_dir, family):
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    model = adapter.load_model(model_dir)
    batch = adapter.encode(adapter.load_processor(model_dir), _video_messages(), _sized_video(family))
    prompt_len = batch["input_ids"].shape[1]
    out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert tuple(out.shape) == (1, prompt_len + 3)
    assert torch.equal(out[:, :prompt_len], batch["input_ids"])


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vl_text_only_prompt_has_no_vision_inputs(tiny_model_dir, family):
    adapter = get_adapter(family)
    processor = adapter.load_processor(tiny_model_dir(family))
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    batch = adapter.encode(processor, messages, None)
    expected = processor.tokenizer(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert batch["input_ids"][0].tolist() == expected["input_ids"]
    assert "pixel_values_videos" not in batch


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vl_encode_errors(tiny_model_dir, family):
    adapter = get_adapter(family)
    processor = adapter.load_processor(tiny_model_dir(family))
    side = adapter.video_size_factor
    with pytest.raises(ValueError, match=rf"clips/seven\.mp4: 50x{3 * side} pixels; .*multiples of {side}"):
        adapter.encode(processor, _video_messages(), _video(height=50, width=3 * side))
    with pytest.raises(ValueError, match="1 video item.*no video"):
        adapter.encode(processor, _video_messages(), None)
    text_only = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    with pytest.raises(ValueError, match=r"exactly one .* clips/seven\.mp4, found 0"):
        adapter.encode(processor, text_only, _sized_video(family))


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_text_family_encodes_and_runs_text(tiny_model_dir, family):
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    tokenizer = adapter.load_processor(model_dir)
    assert isinstance(tokenizer, type(AutoTokenizer.from_pretrained(str(model_dir))))
    model = adapter.load_model(model_dir)
    assert isinstance(model, type(AutoModelForCausalLM.from_pretrained(str(model_dir))))
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
    ]
    batch = adapter.encode(tokenizer, messages, None)
    expected = "<|im_start|>system\nAnswer briefly.<|im_end|>\n" + (
        f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert batch["input_ids"][0].tolist() == tokenizer(expected)["input_ids"]
    with torch.no_grad():
        logits = model(**batch).logits
    assert tuple(logits.shape) == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_text_family_refuses_vision_inputs(tiny_model_dir, family):
    adapter = get_adapter(family)
    tokenizer = adapter.load_processor(tiny_model_dir(family))
    with pytest.raises(ValueError, match=r"text-only and cannot take video clips/seven\.mp4"):
        adapter.encode(tokenizer, [{"role": "user", "content": "hi"}], _video())
    with pytest.raises(ValueError, match="user message holds a 'video' item"):
        adapter.encode(tokenizer, _video_messages(), None)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_config_ids_match_the_tokenizer_and_weights_are_tiny(tiny_model_dir, family):
    model_dir = tiny_model_dir(family)
    assert adapter_for_model_dir(model_dir) is get_adapter(family)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    text_config = config.get("text_config", config)
    ids = tokenizer.convert_tokens_to_ids
    assert text_config["vocab_size"] == len(tokenizer)
    assert text_config["eos_token_id"] == ids("<|im_end|>") == tokenizer.eos_token_id
    assert text_config["pad_token_id"] == ids("<|endoftext|>") == tokenizer.pad_token_id
    if family in VL_FAMILIES:
        assert config["image_token_id"] == ids("<|image_pad|>")
        assert config["video_token_id"] == ids("<|video_pad|>")
        assert config["vision_start_token_id"] == ids("<|vision_start|>")
        assert config["vision_end_token_id"] == ids("<|vision_end|>")
        head_dim = text_config["hidden_size"] // text_config["num_attention_heads"]
        assert sum(text_config["rope_parameters"]["mrope_section"]) * 2 == head_dim
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [ids("<|im_end|>"), ids("<|endoftext|>")]
    assert (model_dir / "model.safetensors").stat().st_size < 4 * 2**20


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_same_seed_gives_identical_weights(tmp_path, tiny_model_dir, family):
    adapter = get_adapter(family)
    torch.manual_seed(1234)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(1234)
    again = load_file(str(adapter.build_tiny(tmp_path / "again", seed=0) / "model.safetensors"))
    assert torch.equal(torch.rand(3), expected_next_draw)  # the caller's RNG stream is untouched
    other = load_file(str(adapter.build_tiny(tmp_path / "other", seed=1) / "model.safetensors"))
    first = load_file(str(tiny_model_dir(family) / "model.safetensors"))

    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    randomly_initialised = [name for name in first if first[name].std() > 0]
    assert randomly_initialised
    assert all(not torch.equal(first[name], other[name]) for name in randomly_initialised)


@pytest.mark.parametrize("family", QWEN2_VL_FAMILIES)
@pytest.mark.parametrize("num_frames, height, width", [(5, 56, 84), (8, 112, 112), (1, 28, 56)])
def test_prompt_length_arithmetic_equals_the_encoded_length(tiny_model_dir, family, num_frames, height, width):
    """The dataset sizes prompts without decoding pixels: placeholder ids + counted video tokens must be exact."""
    adapter = get_adapter(family)
    processor = adapter.load_processor(tiny_model_dir(family))
    video = _video(num_frames=num_frames, height=height, width=width)
    encoded = adapter.encode(processor, _video_messages(), video)
    placeholder_ids = adapter.render_prompt_ids(processor, _video_messages())
    counted = adapter.count_video_tokens(processor, video.timestamps, height, width)
    assert counted == int(encoded["video_grid_thw"].prod()) // 4
    assert len(placeholder_ids) - 1 + counted == encoded["input_ids"].shape[-1]
