"""Step 1, segment: cut every long video into consecutive clips of ``clip_seconds`` and re-encode them as H.264 mp4.

Clips are cut on frame timestamps (frame-accurate, variable frame rates included): frame ``i`` belongs to window
``floor(t_i / clip_seconds)``. Re-encoding rather than stream-copying is what makes the cuts exact, since a copied
clip can only start at a keyframe. A last clip shorter than ``min_clip_seconds`` joins the one before it, so no
footage is lost and no clip is too short to caption. A video that cannot be decoded is skipped and counted.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from longrl.data.synthetic_scenes import write_mp4
from longrl.data.video import VideoProbe, probe_video

from lvreason.backends import ModelPool
from lvreason.config import PipelineConfig
from lvreason.records import write_jsonl
from lvreason.workdir import WorkDir

logger = logging.getLogger(__name__)


def clip_windows(frame_times: np.ndarray, fps: float, clip_seconds: float,
                 min_clip_seconds: float = 0.0) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges of the clips of a video whose frames start at ``frame_times`` seconds."""
    # the slack keeps a frame stamped 9.9999999 s (float rounding of 10 s) in the window that starts at 10 s
    window = np.floor((frame_times - frame_times[0]) / clip_seconds + 1e-6).astype(np.int64)
    starts = [0, *np.flatnonzero(np.diff(window)) + 1]
    ranges = [(start, end) for start, end in zip(starts, [*starts[1:], len(frame_times)])]
    if len(ranges) > 1:
        start, end = ranges[-1]
        if frame_times[end - 1] - frame_times[start] + 1 / fps < min_clip_seconds:
            ranges[-2:] = [(ranges[-2][0], end)]
    return [(int(start), int(end)) for start, end in ranges]


def _frames(probe: VideoProbe) -> Iterator[np.ndarray]:
    """Every frame of the video stream in presentation order, RGB, cropped to even sides (H.264 4:2:0 needs them)."""
    with av.open(probe.path) as container:
        for frame in container.decode(container.streams[probe.stream_index]):
            image = frame.to_ndarray(format="rgb24")
            yield image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]


def segment_video(video: Path, name: str, work: WorkDir, clip_seconds: float,
                  min_clip_seconds: float) -> list[dict[str, Any]]:
    """Write the clips of ``video`` (dataset name ``name``) under ``work.clips``; their manifest rows, in order
    (``clip`` paths relative to the work directory, so it can move)."""
    probe = probe_video(video)
    times = probe.frame_times
    rows = []
    with contextlib.closing(_frames(probe)) as frames:
        for index, (start, end) in enumerate(clip_windows(times, probe.fps, clip_seconds, min_clip_seconds)):
            clip = work.clips / Path(name).with_suffix("") / f"clip_{index:04d}.mp4"
            clip.parent.mkdir(parents=True, exist_ok=True)
            write_mp4(clip, itertools.islice(frames, end - start), probe.fps)
            rows.append({"video": name, "index": index, "clip": clip.relative_to(work.root).as_posix(),
                         "start_s": round(float(times[start]), 3),
                         "end_s": round(float(times[end - 1]) + 1 / probe.fps, 3), "num_frames": end - start,
                         "fps": probe.fps})
    return rows


def find_videos(root: Path, extensions: list[str]) -> list[Path]:
    suffixes = {extension.lower() for extension in extensions}
    return sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    root = Path(cfg.videos_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"videos_dir {root} is not a directory")
    # a work_dir inside videos_dir holds clips, which are not source videos
    videos = [video for video in find_videos(root, cfg.segment.extensions)
              if work.root.resolve() not in video.resolve().parents]
    rows, failed = [], []
    for video in videos:
        name = video.relative_to(root).as_posix()
        try:
            rows += segment_video(video, name, work, cfg.segment.clip_seconds, cfg.segment.min_clip_seconds)
        # VideoDecodeError (a ValueError) from the probe; ValueError from write_mp4 for a stream that ends early
        except (ValueError, av.error.FFmpegError) as error:
            logger.warning("segment: skipping %s (%s)", name, error)
            failed.append(name)
    write_jsonl(work.segments, rows)
    durations = [row["end_s"] - row["start_s"] for row in rows]
    return {"videos": len(videos), "videos_failed": failed, "clips": len(rows),
            "clip_seconds_mean": round(sum(durations) / len(durations), 3) if durations else None}
