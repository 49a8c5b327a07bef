"""Rows with images (one or several, EasyR1's ``images`` key) -> resized pictures and image tokens; bad images error
naming the row and file, or are skipped and counted when configured."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import SkippedRow, VideoQADataset
from longrl.data.rows import DatasetRowError
from longrl.models import get_adapter

REPO = Path(__file__).resolve().parents[2]
FAMILY = "qwen2_5_vl"


def _write_image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _rows(tmp_path: Path, rows: list[dict]) -> Path:
    files = tmp_path / "rows.jsonl"
    files.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return files


def _dataset(files: Path, family: str, model_dir: Path, **overrides) -> VideoQADataset:
    adapter = get_adapter(family)
    data = DataConfig(train_files=str(files), prompt_key="question", max_pixels=12544, min_pixels=784,
                      format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"), **overrides)
    return VideoQADataset(str(files), data, RolloutConfig(), adapter, adapter.load_processor(model_dir))


def test_multi_image_row_has_each_image_resized_and_its_tokens_in_order(tmp_path, tiny_model_dir):
    _write_image(tmp_path / "wide.png", 60, 90, seed=0)  # -> 56 x 84: 2 x 3 merged tokens
    square = _write_image(tmp_path / "square.png", 56, 56, seed=1)  # kept: 2 x 2
    files = _rows(tmp_path, [{"question": "Which picture is brighter?", "answer": "B",
                              "images": ["wide.png", "square.png"]}])
    sample = _dataset(files, FAMILY, tiny_model_dir(FAMILY))[0]
    inputs = sample["inputs"]
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6], [1, 4, 4]]
    assert "pixel_values_videos" not in inputs
    image_token = get_adapter(FAMILY).load_model(tiny_model_dir(FAMILY)).config.image_token_id
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, (inputs["input_ids"] == image_token).int().numpy(), 0])))[::2]
    assert runs.tolist() == [6, 4]  # two placeholder runs, the wide image first
    # The square image went in unresized: its patches are the processor's own patches of the original pixels.
    processor = get_adapter(FAMILY).load_processor(tiny_model_dir(FAMILY))
    direct = processor.image_processor(images=[square], do_resize=False, return_tensors="pt")["pixel_values"]
    assert torch.equal(inputs["pixel_values"][6 * 4:], direct)


def test_overlong_filter_counts_image_tokens(tmp_path, tiny_model_dir):
    _write_image(tmp_path / "a.png", 56, 56, seed=2)
    files = _rows(tmp_path, [{"question": "What colour?", "answer": "red", "images": ["a.png", "a.png"]}])
    full = int(_dataset(files, FAMILY, tiny_model_dir(FAMILY))[0]["inputs"]["input_ids"].shape[-1])
    assert len(_dataset(files, FAMILY, tiny_model_dir(FAMILY), max_prompt_length=full)) == 1
    with pytest.raises(ValueError, match="no usable rows.*overlong prompt"):
        _dataset(files, FAMILY, tiny_model_dir(FAMILY), max_prompt_length=full - 1)


def test_bad_images_fail_naming_row_and_file_or_are_skipped(tmp_path, tiny_model_dir):
    _write_image(tmp_path / "good.png", 56, 56, seed=3)
    (tmp_path / "text.png").write_text("not an image")
    _write_image(tmp_path / "cut.png", 56, 56, seed=4)
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # header intact, pixels truncated
    rows = [{"question": "q", "answer": "a", "images": ["good.png"]},
            {"question": "q", "answer": "a", "images": ["good.png", "missing.png"]},
            {"question": "q", "answer": "a", "images": ["text.png"]},
            {"question": "q", "answer": "a", "images": "cut.png"}]
    files = _rows(tmp_path, rows)
    with pytest.raises(DatasetRowError, match=r"rows\.jsonl row 1: unreadable image: image .*missing\.png does not"):
        _dataset(files, FAMILY, tiny_model_dir(FAMILY))
    dataset = _dataset(files, FAMILY, tiny_model_dir(FAMILY), on_bad_row="skip")
    assert [row.row_index for row in dataset.rows] == [0, 3]
    assert dataset.skip_reasons() == {"unreadable image": 2}
    skipped = dataset[1]  # the truncated file fails only when its pixels are read
    assert isinstance(skipped, SkippedRow) and skipped.row_index == 3 and "cut.png cannot be decoded" in skipped.reason


def test_a_text_only_family_refuses_image_rows(tmp_path, tiny_model_dir):
    _write_image(tmp_path / "a.png", 56, 56, seed=5)
    files = _rows(tmp_path, [{"question": "q", "answer": "a", "images": ["a.png"]}])
    with pytest.raises(DatasetRowError, match=r"row 0: images unsupported: the row has 1 image\(s\) but model family "
                                              r"'qwen2' takes none \(data\.image_key='images'\)"):
        _dataset(files, "qwen2", tiny_model_dir("qwen2"))
