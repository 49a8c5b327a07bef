"""Rows + real synthetic videos + a tiny model's processor -> tokenised samples; bad rows error or are counted."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import VideoQADataset, collate_left_padded
from longrl.data.frames import frame_max_pixels
from longrl.data.rows import DatasetRowError
from longrl.data.synthetic import generate_dataset
from longrl.models import get_adapter
from longrl.protocol import TOKEN_KEYS

REPO = Path(__file__).resolve().parents[2]
FAMILY = "qwen2_5_vl"


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, num=6, frames=12, seed=3)
    return out


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return get_adapter(FAMILY).load_processor(tiny_model_dir(FAMILY))


def _data_cfg(files: Path, **overrides) -> DataConfig:
    return DataConfig(train_files=str(files), prompt_key="question", video_key="video", max_pixels=12544,
                      min_pixels=3136, format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"), **overrides)


def _dataset(files: Path, processor, rollout: RolloutConfig | None = None, **overrides) -> VideoQADataset:
    return VideoQADataset(str(files), _data_cfg(files, **overrides), rollout or RolloutConfig(num_video_frames=6),
                          get_adapter(FAMILY), processor)


def test_sample_has_the_sampled_frames_and_matching_video_tokens(synthetic_dir, processor):
    dataset = _dataset(synthetic_dir / "train.jsonl", processor)
    rows = [json.loads(line) for line in (synthetic_dir / "train.jsonl").read_text().splitlines()]
    assert len(dataset) == len(rows)
    sample = dataset[0]
    inputs = sample["inputs"]
    # 12 source frames at 2 fps, 6 sampled; 112x112 frames -> grid (3, 8, 8) -> 3*8*8/4 = 48 video tokens
    assert inputs["video_grid_thw"].tolist() == [[3, 8, 8]]
    assert tuple(inputs["pixel_values_videos"].shape) == (3 * 8 * 8, 3 * 2 * 14 * 14)
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((inputs["input_ids"] == video_token).sum()) == 48
    assert inputs["input_ids"].dim() == 1 and inputs["attention_mask"].sum() == len(inputs["input_ids"])
    assert sample["answer"] == rows[0]["answer"] and sample["uid"] == rows[0]["id"]
    # frames round(linspace(0, 11, 6)) = 0, 2, 4, 7, 9, 11 at 2 fps
    assert sample["timestamps"].tolist() == [0.0, 1.0, 2.0, 3.5, 4.5, 5.5]
    text = processor.tokenizer.decode(inputs["input_ids"])
    for letter, option in zip("ABC", rows[0]["options"]):
        assert f"{letter}. {option}" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_tokens_per_frame_caps_frame_pixels(synthetic_dir, processor):
    adapter = get_adapter(FAMILY)
    data = _data_cfg(synthetic_dir / "train.jsonl")
    assert frame_max_pixels(data, RolloutConfig(tokens_per_frame=None), adapter) == 12544
    # 4 tokens per frame = 4 * 28*28*2 pixels = 56x112 at most -> 56x56 for a square video
    assert frame_max_pixels(data, RolloutConfig(tokens_per_frame=4), adapter) == 6272
    dataset = _dataset(synthetic_dir / "train.jsonl", processor, RolloutConfig(num_video_frames=4, tokens_per_frame=4))
    assert dataset[0]["inputs"]["video_grid_thw"].tolist() == [[2, 4, 4]]


def _with_bad_videos(synthetic_dir: Path, tmp_path: Path) -> Path:
    """A copy of the train split with four broken videos: missing, empty, garbage and truncated."""
    rows = [json.loads(line) for line in (synthetic_dir / "train.jsonl").read_text().splitlines()]
    good = synthetic_dir / rows[0]["video"]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(b"this is not a video" * 100)
    # cut after the first frames: the header and the first frame still read, the rest is gone
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size * 4 // 5])
    shutil.copy(good, tmp_path / "good.mp4")
    bad_rows = [{**rows[0], "id": name, "video": f"{name}.mp4"} for name in ("missing", "empty", "garbage", "truncated")]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{**rows[0], "video": "good.mp4"}, *bad_rows]) + "\n")
    return path


def test_bad_videos_fail_naming_row_and_file(synthetic_dir, processor, tmp_path):
    path = _with_bad_videos(synthetic_dir, tmp_path)
    with pytest.raises(DatasetRowError) as info:
        _dataset(path, processor)
    message = str(info.value)
    assert f"{path} row 1 (video {tmp_path / 'missing.mp4'})" in message and "does not exist" in message


@pytest.mark.parametrize("row, reason", [(2, "empty"), (3, "not a readable media container")])
def test_each_bad_video_kind_has_its_error_at_build_time(synthetic_dir, processor, tmp_path, row, reason):
    path = _with_bad_videos(synthetic_dir, tmp_path)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[row] + "\n")
    with pytest.raises(DatasetRowError) as info:
        _dataset(path, processor)
    assert f"{path} row 1" in str(info.value) and reason in str(info.value)


def test_truncated_video_fails_when_loaded_naming_the_row(synthetic_dir, processor, tmp_path):
    """Its header still states every frame, so only the packet check at load time can tell."""
    path = _with_bad_videos(synthetic_dir, tmp_path)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[4] + "\n")
    dataset = _dataset(path, processor)
    assert len(dataset) == 2
    with pytest.raises(DatasetRowError) as info:
        dataset[1]
    assert f"{path} row 1 (video {tmp_path / 'truncated.mp4'})" in str(info.value) and "truncated" in str(info.value)


def test_bad_videos_are_skipped_and_counted_when_configured(synthetic_dir, processor, tmp_path, caplog, capsys):
    path = _with_bad_videos(synthetic_dir, tmp_path)
    dataset = _dataset(path, processor, on_bad_row="skip")
    assert re.fullmatch(rf"dataset {re.escape(str(path))}: 5 rows read, 2 kept \(\d+\.\d s\), done\n",
                        capsys.readouterr().out)
    # missing, empty and garbage files go at build time; the truncated one when it is loaded
    assert [row.video for row in dataset.rows] == [str(tmp_path / "good.mp4"), str(tmp_path / "truncated.mp4")]
    assert [(s.row_index, s.reason.split(":")[0]) for s in dataset.skipped] == [(i, "unreadable video") for i in (1, 2, 3)]
    caplog.clear()  # the build's summary
    with caplog.at_level("WARNING", logger="longrl.data.dataset"):
        batch = collate_left_padded([dataset[0], dataset[1]], pad_token_id=0)
        dataset[1]  # a second epoch: counted again, not logged again
    assert batch["uid"] == [dataset.rows[0].uid] and len(batch["input_ids"]) == 1
    assert [(s.row_index, "truncated" in s.reason) for s in batch["skipped"]] == [(4, True)]
    assert dataset.skip_reasons() == {"unreadable video": 5}
    assert [record.getMessage().split(": ")[0] for record in caplog.records] == [
        f"dropping {path} row 4 ({tmp_path / 'truncated.mp4'})"]


def _hostile_rows(synthetic_dir: Path, bad_videos: dict[str, Path], tmp_path: Path) -> Path:
    """Two good rows among every kind of row a dataset build drops."""
    good = json.loads((synthetic_dir / "train.jsonl").read_text().splitlines()[0])
    video = str(synthetic_dir / good["video"])
    files = {"missing": "missing", "empty": "empty.mp4", "audio only": "audio_only.mp4",
             "moov cut off": "truncated40_index_last.mp4"}
    rows = [{**good, "video": video},
            *({**good, "id": name, "video": str(bad_videos[case])} for name, case in files.items()),
            {key: value for key, value in good.items() if key != "video"},
            {**good, "id": "two", "video": [video, video]},
            {**good, "id": "long", "video": video, "question": "why " * 9000},
            {**good, "id": "good2", "video": video}]
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_every_dropped_row_is_counted_by_kind_and_logged_once(synthetic_dir, processor, bad_videos, tmp_path,
                                                              caplog):
    path = _hostile_rows(synthetic_dir, bad_videos, tmp_path)
    with caplog.at_level("WARNING", logger="longrl.data.dataset"):
        dataset = _dataset(path, processor, on_bad_row="skip")
    assert [row.uid for row in dataset.rows] == [dataset.rows[0].uid, "good2"]
    assert [(s.row_index, s.kind) for s in dataset.skipped] == [
        (1, "unreadable video"), (2, "unreadable video"), (3, "unreadable video"), (4, "unreadable video"),
        (5, "missing video"), (6, "several video files"), (7, "overlong prompt")]
    assert dataset.skip_reasons() == {"unreadable video": 4, "missing video": 1, "several video files": 1,
                                      "overlong prompt": 1}
    [record] = caplog.records  # one block
    lines = record.getMessage().splitlines()
    assert lines[0] == f"dataset {path}: kept 2 rows, dropped 7:"
    assert lines[1].split()[:3] == ["unreadable", "video", "4"]
    assert f"{path} row 1 ({bad_videos['missing']})" in lines[1] and lines[1].endswith(", ...")  # first 3 of 4
    assert lines[2].split()[:3] == ["missing", "video", "1"] and f"{path} row 5" in lines[2]


def test_rows_without_their_video_or_with_several_are_named_under_error(synthetic_dir, processor, bad_videos,
                                                                        tmp_path):
    lines = _hostile_rows(synthetic_dir, bad_videos, tmp_path).read_text().splitlines()
    path = tmp_path / "two.jsonl"
    for row, message in [(5, "row 0: no video under data.video_key='video' (row keys: ['answer', "),
                         (6, "row 0: expected one video per row, got 2")]:
        path.write_text(lines[row] + "\n" + lines[0] + "\n")
        with pytest.raises(DatasetRowError, match=re.escape(message)):
            _dataset(path, processor)


def test_overlong_prompts_are_filtered_or_fail_with_the_limit(synthetic_dir, processor):
    files = synthetic_dir / "train.jsonl"
    full = len(_dataset(files, processor)[0]["inputs"]["input_ids"])
    shortest = min(len(_dataset(files, processor)[i]["inputs"]["input_ids"]) for i in range(4))
    filtered = _dataset(files, processor, max_prompt_length=shortest)
    kept = [len(filtered[i]["inputs"]["input_ids"]) for i in range(len(filtered))]
    assert kept and max(kept) <= shortest
    assert len(filtered) + len(filtered.skipped) == 4
    assert all(s.reason.startswith("overlong prompt") for s in filtered.skipped)
    unfiltered = _dataset(files, processor, max_prompt_length=full - 1, filter_overlong_prompts=False)
    with pytest.raises(DatasetRowError, match=f"overlong prompt: {full} tokens exceed data.max_prompt_length {full - 1}"):
        unfiltered[0]


def test_collate_left_pads_and_keeps_vision_per_sample(synthetic_dir, processor):
    dataset = _dataset(synthetic_dir / "train.jsonl", processor)
    samples = [dataset[0], dataset[1]]
    lengths = [len(s["inputs"]["input_ids"]) for s in samples]
    batch = collate_left_padded(samples, pad_token_id=0)
    width = max(lengths)
    assert batch["input_ids"].shape == (2, width)
    for row, sample, length in zip(range(2), samples, lengths):
        assert torch.equal(batch["input_ids"][row, width - length:], sample["inputs"]["input_ids"])
        assert batch["attention_mask"][row].tolist() == [0] * (width - length) + [1] * length
        assert torch.equal(batch["vision_inputs"][row]["pixel_values_videos"], sample["inputs"]["pixel_values_videos"])
    assert batch["uid"] == [samples[0]["uid"], samples[1]["uid"]] and batch["skipped"] == []
    assert batch["mm_token_type_ids"].shape == (2, width)
    assert int(batch["mm_token_type_ids"].sum()) == sum(int(s["inputs"]["mm_token_type_ids"].sum()) for s in samples)


def test_tiny_model_forward_on_a_rendered_video_sample(synthetic_dir, processor, tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    sample = _dataset(synthetic_dir / "train.jsonl", processor)[0]
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir(FAMILY))).eval()
    inputs = {key: value.unsqueeze(0) if key in TOKEN_KEYS else value
              for key, value in sample["inputs"].items()}
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, len(sample["inputs"]["input_ids"]), model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
