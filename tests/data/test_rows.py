"""Reading rows from every supported source and normalising their layouts."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.config.schema import DataConfig
from longrl.data.prompts import FormatPrompt, build_messages
from longrl.data.rows import DatasetRowError, iter_rows

LVR_ROW = {
    "problem_id": 7,
    "problem": "What does the cook do after washing the pan? A. leaves B. fries eggs C. sings D. sleeps",
    "data_type": "video",
    "problem_type": "multiple choice",
    "reasoning": "The pan is washed, then eggs are cracked into it.",
    "videos": "clips/cook.mp4",
    "answer": "<answer>B</answer>",
}
OURS = {"id": "q1", "question": "Where is the ball?", "options": ["left", "middle", "right"], "answer": "C",
        "reasoning": "It moved right.", "video": "videos/a.mp4", "task": "shell_game"}
OURS_CFG = DataConfig(train_files="x", prompt_key="question", video_key="video")


def test_longvideo_reason_layout_with_video_dir(tmp_path: Path):
    path = tmp_path / "lvr.jsonl"
    path.write_text(json.dumps(LVR_ROW) + "\n")
    cfg = DataConfig(train_files=str(path), prompt_key="problem", video_key="videos", video_dir="/data/lvr")
    [row] = list(iter_rows(str(path), cfg))
    assert row.uid == "7"
    assert row.answer == "B"
    assert row.question == LVR_ROW["problem"]
    assert row.options == []
    assert row.video == "/data/lvr/clips/cook.mp4"
    assert row.task == "multiple choice"
    assert row.reasoning == LVR_ROW["reasoning"]
    assert (row.source, row.row_index) == (str(path), 0)


@pytest.mark.parametrize(("dirs", "video", "image"), [
    ({"image_dir": "/imgs"}, "/imgs/videos/a.mp4", "/imgs/i.png"),  # EasyR1: image_dir roots videos too
    ({"image_dir": "/imgs", "video_dir": "/vids"}, "/vids/videos/a.mp4", "/imgs/i.png"),
    ({"video_dir": "/vids"}, "/vids/videos/a.mp4", "/vids/i.png"),
])
def test_image_dir_and_video_dir_root_relative_media(tmp_path: Path, dirs: dict, video: str, image: str):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({**OURS, "images": ["i.png"]}) + "\n")
    cfg = DataConfig(train_files=str(path), prompt_key="question", video_key="video", **dirs)
    [row] = list(iter_rows(str(path), cfg))
    assert (row.video, row.images) == (video, [image])


def test_relative_videos_default_to_the_dataset_directory(tmp_path: Path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(OURS) + "\n" + json.dumps({**OURS, "id": "q2", "video": ["videos/b.mp4"]}) + "\n")
    rows = list(iter_rows(str(path), OURS_CFG))
    assert [r.video for r in rows] == [str(tmp_path / "videos/a.mp4"), str(tmp_path / "videos/b.mp4")]
    assert rows[0].options == ["left", "middle", "right"] and rows[0].answer == "C" and rows[0].task == "shell_game"


def test_json_parquet_and_hf_directory_sources_agree(tmp_path: Path):
    rows = [OURS, {**OURS, "id": "q2", "answer": "A"}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "hf_saved"))
    hub_like = tmp_path / "hub_like" / "data"
    hub_like.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), hub_like / "test-00000-of-00001.parquet")
    cfg = DataConfig(train_files="x", prompt_key="question", video_key="video", video_dir="/v")
    specs = [tmp_path / "rows.json", tmp_path / "wrapped.json", tmp_path / "rows.parquet",
             f"{tmp_path / 'hf_saved'}@test", f"{tmp_path / 'hub_like'}@test"]
    for spec in specs:
        loaded = list(iter_rows(str(spec), cfg))
        assert [(r.uid, r.answer, r.video) for r in loaded] == [("q1", "C", "/v/videos/a.mp4"),
                                                                  ("q2", "A", "/v/videos/a.mp4")], spec
    both = list(iter_rows(f"{tmp_path / 'rows.json'},{tmp_path / 'rows.parquet'}", cfg))
    assert len(both) == 4


def test_missing_key_names_file_row_and_present_keys(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(OURS) + "\n" + json.dumps({"id": "q2", "question": "?", "video": "v.mp4"}) + "\n")
    with pytest.raises(DatasetRowError) as info:
        list(iter_rows(str(path), OURS_CFG))
    assert f"{path} row 1: missing key 'answer'" in str(info.value)
    assert "['id', 'question', 'video']" in str(info.value)


def test_bad_sources_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(iter_rows(str(tmp_path / "nope.jsonl"), OURS_CFG))
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type '.csv'"):
        list(iter_rows(str(tmp_path / "rows.csv"), OURS_CFG))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(OURS) + "\n{not json\n")
    with pytest.raises(ValueError, match="broken.jsonl line 2: not valid JSON"):
        list(iter_rows(str(broken), OURS_CFG))
    many = tmp_path / "many.jsonl"
    many.write_text(json.dumps({**OURS, "video": ["a.mp4", "b.mp4"]}) + "\n")
    with pytest.raises(DatasetRowError, match="row 0: expected one video per row, got 2"):
        list(iter_rows(str(many), OURS_CFG))


def test_format_prompt_renders_options_and_messages(tmp_path: Path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(OURS) + "\n")
    [row] = list(iter_rows(str(path), OURS_CFG))
    prompt = FormatPrompt.from_file(Path(__file__).parents[2] / "examples/format_prompt/r1v.jinja")
    text = prompt.render(row.question, row.options)
    assert text.startswith("Where is the ball?\n\nOptions:\nA. left\nB. middle\nC. right\n")
    assert text.endswith("inside <answer> </answer> tags as the letter of one option.")
    assert "<think> </think>" in text
    messages = build_messages(row, prompt)
    assert messages == [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    assert FormatPrompt.from_file(None).render("Q?", ["x", "y"]) == "Q?\nA. x\nB. y"
    with pytest.raises(ValueError, match="available variables: content, options, letters"):
        FormatPrompt("{{ question }}", "bad.jinja").render("Q", [])
