"""The three benchmark layouts parse (detected from their keys), and bad rows stop with file, row and key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longrl.data.rows import DatasetRowError
from longrl.eval import evaluate
from longrl.eval.benchmarks import BenchmarkRow, read_benchmark


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


LONGRL_ROW = {"id": "counting_000004", "video": "videos/counting_000004.mp4", "task": "counting",
              "question": "How many times does a cyan triangle flash?", "options": ["6", "4", "7", "3"], "answer": "B",
              "reasoning": "Flash 1 ... flash 4.", "meta": {"fps": 2.0}}
LVR_ROW = {"problem_id": 17, "problem": "What does the player do first?\nA. jump\nB. run\nC. sit\nD. wave",
           "data_type": "video", "problem_type": "Temporal Reasoning", "videos": "longvila_videos/abc.mp4",
           "answer": "<answer>B</answer>", "reasoning": "..."}
VIDEOMME_ROW = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
                "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
                "task_type": "Counting Problem", "question": "How many red socks are in the video?",
                "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "C"}


def test_longrl_rows(tmp_path):
    open_ended = {"id": "q2", "question": "What is 2 + 2?", "answer": "4"}
    fmt, rows = read_benchmark(_jsonl(tmp_path / "test.jsonl", [LONGRL_ROW, open_ended]))
    assert fmt == "longrl"
    assert rows == [
        BenchmarkRow(str(tmp_path / "test.jsonl"), 0, "counting_000004", LONGRL_ROW["question"], "B",
                     ["6", "4", "7", "3"], str(tmp_path / "videos/counting_000004.mp4"), {"task": "counting"}, None),
        BenchmarkRow(str(tmp_path / "test.jsonl"), 1, "q2", "What is 2 + 2?", "4"),
    ]


def test_longvideo_reason_rows_from_json(tmp_path):
    path = tmp_path / "lvr.json"
    path.write_text(json.dumps([LVR_ROW, {**LVR_ROW, "problem_id": 18, "videos": ["/abs/x.mp4"]}]))
    fmt, rows = read_benchmark(path, video_dir=tmp_path / "root")
    assert fmt == "longvideo_reason"
    assert rows[0] == BenchmarkRow(str(path), 0, "17", LVR_ROW["problem"], "<answer>B</answer>", [],
                                   str(tmp_path / "root/longvila_videos/abc.mp4"), {"problem_type": "Temporal Reasoning"})
    assert rows[1].video == "/abs/x.mp4" and rows[1].uid == "18"


def test_videomme_rows(tmp_path):
    path = _jsonl(tmp_path / "videomme.jsonl", [VIDEOMME_ROW, {**VIDEOMME_ROW, "videoID": None, "video_id": "002"}])
    fmt, rows = read_benchmark(path, video_dir="/data/videomme")
    assert fmt == "videomme"
    assert rows[0] == BenchmarkRow(
        str(path), 0, "001-1", VIDEOMME_ROW["question"], "C", ["1.", "2.", "3.", "4."], "/data/videomme/fFjv93ACGo8.mp4",
        {"task_type": "Counting Problem", "domain": "Knowledge", "sub_category": "Humanity & History"}, "short")
    assert rows[1].video == "/data/videomme/002.mp4"


def test_format_can_be_named_and_rows_limited(tmp_path):
    path = _jsonl(tmp_path / "rows.jsonl", [LONGRL_ROW] * 5)
    fmt, rows = read_benchmark(path, fmt="longrl", limit=2)
    assert fmt == "longrl" and len(rows) == 2


def test_a_row_missing_a_key_is_named(tmp_path):
    bad = {key: value for key, value in VIDEOMME_ROW.items() if key != "question"}
    path = _jsonl(tmp_path / "videomme.jsonl", [VIDEOMME_ROW, bad])
    with pytest.raises(DatasetRowError, match=rf"{path} row 1: missing key 'question' for format 'videomme'"):
        read_benchmark(path)
    lvr = _jsonl(tmp_path / "lvr.jsonl", [{key: value for key, value in LVR_ROW.items() if key != "answer"}])
    with pytest.raises(DatasetRowError, match=rf"{lvr} row 0: missing key 'answer'"):
        read_benchmark(lvr)


def test_an_unknown_layout_is_refused(tmp_path):
    path = _jsonl(tmp_path / "odd.jsonl", [{"prompt": "q", "label": "A"}])
    with pytest.raises(DatasetRowError, match=r"odd.jsonl row 0: cannot tell the benchmark format .*'label', 'prompt'"):
        read_benchmark(path)
    with pytest.raises(ValueError, match="unknown benchmark format 'mvbench'"):
        read_benchmark(path, fmt="mvbench")


def test_a_missing_video_stops_before_the_model_loads(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [LONGRL_ROW])
    with pytest.raises(DatasetRowError, match=r"test.jsonl row 0 \(video .*counting_000004.mp4\): unreadable video: "
                                              "file does not exist"):
        evaluate(tmp_path / "no_model_here", path)
