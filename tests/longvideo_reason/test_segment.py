"""Step 1: clips are real H.264 files holding exactly the frames of their window, read back by decoding them."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from longrl.data.video import probe_video
from index_frames import read_index
from lvr_helpers import write_index_video
from lvreason.backends import ModelPool
from lvreason.cli import main
from lvreason.config import load_config
from lvreason.pipeline import run_step
from lvreason.segment import clip_windows


def _decoded_indices(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_index(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def _segment(videos: Path, work: Path, **segment) -> list[dict]:
    overrides = [f"videos_dir={videos}", f"work_dir={work}", *(f"segment.{k}={v}" for k, v in segment.items())]
    cfg = load_config(None, overrides)
    result = run_step("segment", cfg, ModelPool(cfg.models))
    assert result.ran
    return [json.loads(line) for line in (work / "segments.jsonl").read_text().splitlines()]


def test_clips_hold_exactly_their_windows_frames(tmp_path):
    videos = tmp_path / "videos"
    write_index_video(videos / "a.mp4", 100, 4.0)  # 25 s
    rows = _segment(videos, tmp_path / "work", clip_seconds=10)
    assert [(r["index"], r["start_s"], r["end_s"], r["num_frames"]) for r in rows] == [
        (0, 0.0, 10.0, 40), (1, 10.0, 20.0, 40), (2, 20.0, 25.0, 20)]
    starts = [0, 40, 80]
    for row, start in zip(rows, starts):
        clip = tmp_path / "work" / row["clip"]
        assert row["clip"] == f"clips/a/clip_{row['index']:04d}.mp4"
        probe = probe_video(clip)
        assert probe.num_frames == row["num_frames"] and probe.fps == pytest.approx(4.0)
        assert probe.frame_times[-1] + 1 / probe.fps == pytest.approx(row["end_s"] - row["start_s"])
        with av.open(str(clip)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        assert _decoded_indices(clip) == list(range(start, start + row["num_frames"]))


def test_a_short_last_clip_joins_the_one_before(tmp_path):
    videos = tmp_path / "videos"
    write_index_video(videos / "a.mp4", 100, 4.0)
    rows = _segment(videos, tmp_path / "work", clip_seconds=10, min_clip_seconds=6)
    assert [(r["start_s"], r["end_s"], r["num_frames"]) for r in rows] == [(0.0, 10.0, 40), (10.0, 25.0, 60)]
    assert _decoded_indices(tmp_path / "work" / rows[1]["clip"]) == list(range(40, 100))


def test_windows_follow_timestamps_of_a_variable_frame_rate():
    # 1 s of 10 fps, then 2 s of 2 fps: windows of 1 s hold 10, 2 and 2 frames
    times = np.concatenate([np.arange(10) * 0.1, 1.0 + np.arange(4) * 0.5])
    assert clip_windows(times, fps=10 / 3, clip_seconds=1.0) == [(0, 10), (10, 12), (12, 14)]


def test_videos_in_subfolders_keep_relative_names_and_a_broken_one_is_counted(tmp_path, long_videos):
    videos = tmp_path / "videos"
    (videos / "sports").mkdir(parents=True)
    for name in ("cooking.mp4", "sports/match.mp4"):
        (videos / name).write_bytes((long_videos / name).read_bytes())
    (videos / "broken.mp4").write_bytes(b"not a video" * 50)
    rows = _segment(videos, tmp_path / "work", clip_seconds=5)
    assert [(r["video"], r["index"], r["num_frames"]) for r in rows] == [
        ("cooking.mp4", 0, 10), ("cooking.mp4", 1, 10), ("cooking.mp4", 2, 4),
        ("sports/match.mp4", 0, 10), ("sports/match.mp4", 1, 10)]
    assert rows[3]["clip"] == "clips/sports/match/clip_0000.mp4"
    stats = json.loads((tmp_path / "work" / "stats" / "segment.json").read_text())
    assert stats["videos"] == 3 and stats["videos_failed"] == ["broken.mp4"] and stats["clips"] == 5


def test_no_video_found_fails_without_marking_the_step_done(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(SystemExit, match=r"step segment failed: it wrote no rows to .*segments\.jsonl"):
        main("segment", [f"videos_dir={tmp_path / 'videos'}", f"work_dir={tmp_path / 'work'}"])
    assert not (tmp_path / "work" / "segments.jsonl").exists()
