"""``VideoModel`` on tiny models with sharp random weights (``tests/sharp_weights.py``) and real synthetic mp4s.

The reference for every reply is built independently of ``longrl.inference``: the training data path (``load_video``,
``build_messages`` with the training format prompt file, the adapter's ``encode``) and the Hugging Face model's own
``generate`` on those inputs, decoded without special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from longrl.config.schema import DataConfig
from longrl.data.prompts import FormatPrompt, build_messages
from longrl.data.rows import QARow
from longrl.data.synthetic import generate_dataset
from longrl.data.video import FrameSampling, load_video
from longrl.inference import VideoModel
from longrl.models import get_adapter
from sharp_weights import save_sharp_model

R1V_PROMPT = Path(__file__).resolve().parents[2] / "examples" / "format_prompt" / "r1v.jinja"
MAX_NEW = 12


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory) -> Path:
    return save_sharp_model("qwen2_5_vl", tmp_path_factory.mktemp("sharp_qwen2_5_vl"))


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    """Synthetic rows whose videos are 16 frames of 56 px at 2 fps (8 s), with absolute video paths."""
    root = tmp_path_factory.mktemp("inference_videos")
    paths = generate_dataset(root, num=3, frames=16, seed=3, size=56, fps=2.0)
    rows = [json.loads(line) for split in ("train", "val", "test") for line in paths[split].read_text().splitlines()]
    return [{**row, "video": str(root / row["video"])} for row in rows]


@pytest.fixture(scope="module")
def model(vl_dir) -> VideoModel:
    return VideoModel.from_pretrained(vl_dir, backend="hf", num_video_frames=4)


def _reference_reply(model_dir: Path, family: str, messages: list[dict], video, max_new: int = MAX_NEW) -> str:
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    tokenizer = getattr(processor, "tokenizer", processor)
    hf = adapter.load_model(model_dir).eval()
    inputs = adapter.encode(processor, messages, video)
    stop = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    with torch.no_grad():
        ids = hf.generate(**inputs, do_sample=False, max_new_tokens=max_new, eos_token_id=stop, pad_token_id=stop[1],
                          suppress_tokens=adapter.media_token_ids(hf.config) or None)
    return tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _qa_row(row: dict) -> QARow:
    return QARow("rows", 0, row["id"], row["question"], row["answer"], row["options"], video=row["video"])


def test_greedy_reply_equals_the_hf_models_own_generate(vl_dir, model, rows):
    row = rows[0]
    got = model.generate_content([{"path": row["video"]}, row["question"]], options=row["options"], thinking=True,
                                 max_new_tokens=MAX_NEW)
    video = load_video(row["video"], FrameSampling(num_frames=4), max_pixels=DataConfig.max_pixels,
                       min_pixels=DataConfig.min_pixels, size_factor=28)
    messages = build_messages(_qa_row(row), FormatPrompt.from_file(R1V_PROMPT))
    expected = _reference_reply(vl_dir, "qwen2_5_vl", messages, video)
    assert isinstance(got, str) and expected.strip(), "the reference reply is not empty"
    assert got == expected
    # Several requests in one engine call (left-padded together) give each its own reply.
    requests = [[{"path": r["video"]}, r["question"]] for r in rows[:2]]
    batched = model.generate_batch(requests, options=[r["options"] for r in rows[:2]], max_new_tokens=MAX_NEW)
    alone = model.generate_content(requests[1], options=rows[1]["options"], max_new_tokens=MAX_NEW)
    assert batched == [[got], [alone]]


def test_thinking_and_direct_render_different_prompts(vl_dir, model, rows, tmp_path):
    row = rows[0]
    contents = [{"path": row["video"]}, row["question"]]
    thinking = model.messages(contents, thinking=True, options=row["options"])
    direct = model.messages(contents, thinking=False, options=row["options"])
    # Thinking with a video is the training prompt, word for word.
    assert thinking == build_messages(_qa_row(row), FormatPrompt.from_file(R1V_PROMPT))
    lettered = "\n".join(f"{letter}. {option}" for letter, option in zip("ABCD", row["options"]))
    assert direct[0]["content"][1]["text"] == (f"{row['question']}\n\nOptions:\n{lettered}\n\n"
                                               "Answer with the letter of the correct option only.")
    thinking_ids = model.prompt_inputs(contents, thinking=True, options=row["options"])["input_ids"]
    direct_ids = model.prompt_inputs(contents, thinking=False, options=row["options"])["input_ids"]
    assert thinking_ids.tolist() != direct_ids.tolist()
    # Without a video the thinking prompt does not ask to watch one.
    text_only = model.messages(["What is 2 + 2?"], thinking=True)[0]["content"][0]["text"]
    assert text_only == ("What is 2 + 2?\n\nThink it through step by step inside <think> </think> tags, then give only "
                         "the final answer inside <answer> </answer> tags.")
    # A format prompt file replaces the built-in one.
    custom = tmp_path / "custom.jinja"
    custom.write_text("Q: {{ content }} ({{ options | length }} options)")
    other = VideoModel.from_pretrained(vl_dir, num_video_frames=4, thinking_prompt=custom)
    rendered = other.messages(contents, options=row["options"])[0]["content"][1]["text"]
    assert rendered == f"Q: {row['question']} ({len(row['options'])} options)"


@pytest.mark.parametrize("sampling, grid", [
    (dict(num_video_frames=4), [2, 4, 4]),                    # 4 frames -> 2 temporal patches of 56x56
    (dict(fps=1.0), [4, 4, 4]),                               # 8 s at 1 fps -> 8 frames
    (dict(fps=1.0, max_video_frames=6), [3, 4, 4]),           # capped at 6 frames
    (dict(num_video_frames=4, max_pixels=784, min_pixels=784), [2, 2, 2]),  # one 28x28 merged token a frame
])
def test_frame_sampling_sets_the_video_grid(vl_dir, rows, sampling, grid):
    model = VideoModel.from_pretrained(vl_dir, **sampling)
    inputs = model.prompt_inputs([{"path": rows[0]["video"]}, "What happens?"])
    assert inputs["video_grid_thw"].tolist() == [grid]
    placeholders = int((inputs["input_ids"] == model.engine.model.config.video_token_id).sum())
    assert placeholders == grid[0] * grid[1] * grid[2] // 4


def test_constant_frames_control_keeps_the_prompt_and_drops_the_content(vl_dir, model, rows):
    contents = [{"path": rows[0]["video"]}, "What happens?"]
    seen = model.prompt_inputs(contents)
    control = VideoModel.from_pretrained(vl_dir, num_video_frames=4, constant_frames=True).prompt_inputs(contents)
    assert torch.equal(control["input_ids"], seen["input_ids"])
    assert control["video_grid_thw"].tolist() == seen["video_grid_thw"].tolist()
    # the reference: the same decoded frames, each pixel set to its median over them, through the adapter's encode
    video = load_video(rows[0]["video"], FrameSampling(num_frames=4), max_pixels=DataConfig.max_pixels,
                       min_pixels=DataConfig.min_pixels, size_factor=model.adapter.video_size_factor)
    frames = video.frames.copy()
    for y, x, c in np.ndindex(*frames.shape[1:]):
        frames[:, y, x, c] = round(float(np.median(video.frames[:, y, x, c])))
    assert (frames == frames[:1]).all() and not (video.frames == video.frames[:1]).all()
    video.frames = frames
    expected = model.adapter.encode(model.processor, model.messages(contents), video)["pixel_values_videos"]
    assert torch.equal(control["pixel_values_videos"], expected)
    assert not torch.equal(control["pixel_values_videos"], seen["pixel_values_videos"])


def test_n_samples_are_seeded_strings(model, rows):
    contents = [{"path": rows[0]["video"]}, rows[0]["question"]]
    samples = model.generate_content(contents, n=3, temperature=1.0, seed=5, max_new_tokens=MAX_NEW)
    assert isinstance(samples, list) and len(samples) == 3 and all(isinstance(s, str) for s in samples)
    assert len(set(samples)) > 1, "sampled replies differ"
    assert model.generate_content(contents, n=3, temperature=1.0, seed=5, max_new_tokens=MAX_NEW) == samples
    assert isinstance(model.generate_content(contents, max_new_tokens=2), str)


def test_text_only_family_answers_text_contents(tmp_path, rows):
    model_dir = save_sharp_model("qwen2", tmp_path / "qwen2")
    model = VideoModel.from_pretrained(model_dir)
    got = model.generate_content(["What is two plus two?"], thinking=False, max_new_tokens=MAX_NEW)
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is two plus two?\n\nAnswer with the final answer only."}]}]
    assert model.messages(["What is two plus two?"], thinking=False) == messages
    expected = _reference_reply(model_dir, "qwen2", messages, None)
    assert expected.strip() and got == expected
    with pytest.raises(ValueError, match="text-only"):
        model.generate_content([{"path": rows[0]["video"]}, "What happens?"])
