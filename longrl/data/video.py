"""Decode a video into a fixed set of sampled, resized RGB frames.

``load_video`` = probe the container (``decoders.probe_video``: rejects missing, empty, corrupt and
truncated files before any decoder touches them) -> choose frames by presentation time
(``sample_frame_indices``) -> decode only those frames with decord (PyAV where decord is missing, fails on
the file or disagrees with the container), turned upright by the display rotation ->
resize every frame to one size under a pixel budget (``fit_under_pixels``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from longrl.data.decoders import (
    DECODERS,
    VideoDecodeError,
    VideoProbe,
    decord_available,
    probe_video,
)

__all__ = [
    "DecodedVideo",
    "FrameSampling",
    "VideoDecodeError",
    "VideoProbe",
    "constant_rate_times",
    "fit_under_pixels",
    "load_video",
    "probe_video",
    "sample_frame_indices",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
# Seconds of slack when comparing times, so that rounding (0.1 * 3 = 0.30000000000000004) never moves an instant
# that falls on a frame's start to the frame before it.
_SLACK_S = 1e-9
# Files whose decoder fallback has been logged (once per file, not once per epoch).
_FALLBACK_LOGGED: set[str] = set()


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video to keep: exactly ``num_frames`` spread evenly in time, or ``fps`` frames per
    second of video time capped at ``max_frames`` (spread evenly over the whole video when the cap bites).
    """

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int = 768

    def __post_init__(self) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ValueError(
                f"FrameSampling needs exactly one of num_frames / fps, got num_frames={self.num_frames}, "
                f"fps={self.fps}"
            )
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"FrameSampling.num_frames must be >= 1, got {self.num_frames}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"FrameSampling.fps must be > 0, got {self.fps}")
        if self.max_frames < 1:
            raise ValueError(f"FrameSampling.max_frames must be >= 1, got {self.max_frames}")


@dataclass
class DecodedVideo:
    """Sampled frames of one video and where they sit in the source."""

    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, already resized
    timestamps: np.ndarray  # (T,) float64 seconds of each sampled frame from the start of the source video
    source_fps: float
    source_num_frames: int
    # seconds the source runs; None for source_num_frames / source_fps (a constant frame rate)
    source_duration: float | None = None

    def with_constant_frames(self) -> DecodedVideo:
        """The same video with every frame replaced by one constant frame, its per-pixel median over the sampled
        frames: a control that keeps the prompt's length, timestamps and frame count and the video's look (its
        background, where events are brief) but none of its events, so a score on it shows what a model answers
        without watching (chance, for a model that uses the video)."""
        median = np.median(self.frames, axis=0).round().astype(self.frames.dtype)
        return dataclasses.replace(self, frames=np.broadcast_to(median, self.frames.shape).copy())

    @property
    def sampled_fps(self) -> float:
        """Sampled frames per second of source video (T / duration): the fps Qwen2.5-VL's processor expects."""
        duration = self.source_duration or self.source_num_frames / self.source_fps
        return len(self.frames) / duration


def _nearest_frames(frame_times: np.ndarray, count: int) -> np.ndarray:
    """The frames nearest to ``count`` instants spread evenly from the first frame's time to the last's
    (a tie goes to the later frame; with more instants than frames, frames repeat)."""
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    instants = frame_times[0] + np.arange(count, dtype=np.float64) * (frame_times[-1] - frame_times[0]) / (count - 1)
    midpoints = (frame_times[:-1] + frame_times[1:]) / 2
    return np.searchsorted(midpoints, instants + _SLACK_S, side="right").astype(np.int64)


def _frames_on_screen(frame_times: np.ndarray, duration: float, fps: float) -> np.ndarray:
    """The frames on screen at some instant k / ``fps`` (k = 0, 1, ...) before ``duration``, each once.

    Frame i is on screen from its own time to the next frame's (the last one until ``duration``), so this is
    decided per frame, without listing the instants (a high ``fps`` over hours would be millions of them).
    """
    starts = (frame_times - _SLACK_S) * fps
    ends = np.append(frame_times[1:], frame_times[0] + duration) * fps - _SLACK_S * fps
    return np.flatnonzero(np.ceil(starts) < ends).astype(np.int64)


def sample_frame_indices(frame_times: np.ndarray, duration: float, sampling: FrameSampling) -> np.ndarray:
    """Indices (int64, non-decreasing) of the frames to keep, chosen by presentation time.

    ``frame_times`` are the frames' times in seconds (ascending; a variable frame rate is fine), ``duration`` the
    time from the first frame's start to the last one's end. By count: ``num_frames`` instants spread evenly from
    the first frame to the last, each taking the nearest frame (a video with fewer frames repeats frames, so the
    count is always exact). By rate: the frame on screen at each instant k / ``fps`` inside the video, each frame
    once (so a rate above the source's keeps every frame once). When that gives more than ``max_frames``,
    ``max_frames`` are taken by count instead.
    """
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frame_times.ndim != 1 or len(frame_times) < 1:
        raise ValueError(f"frame_times must list at least one frame, got shape {frame_times.shape}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if sampling.num_frames is not None:
        return _nearest_frames(frame_times, sampling.num_frames)
    kept = _frames_on_screen(frame_times, duration, sampling.fps)
    if len(kept) > sampling.max_frames:
        return _nearest_frames(frame_times, sampling.max_frames)
    return kept


def constant_rate_times(num_frames: int, fps: float) -> tuple[np.ndarray, float]:
    """Frame times and duration of ``num_frames`` at a constant ``fps``: what a header alone lets one assume."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return np.arange(num_frames, dtype=np.float64) / fps, num_frames / fps


def _multiple(value: float, factor: int, how: str) -> int:
    """``value`` rounded to a multiple of ``factor`` ("nearest" half up, "down" or "up"), at least ``factor``.

    The 1e-9 slack keeps an exact multiple that floating point computed as 335.99999 from losing a patch.
    """
    units = value / factor
    if how == "down":
        count = math.floor(units + 1e-9)
    elif how == "up":
        count = math.ceil(units - 1e-9)
    else:
        count = math.floor(units + 0.5)
    return max(factor, count * factor)


def fit_under_pixels(
    height: int, width: int, max_pixels: int | None, min_pixels: int | None, factor: int = 28
) -> tuple[int, int]:
    """Output (height, width): multiples of ``factor``, aspect ratio kept as closely as rounding allows,
    ``min_pixels <= height * width <= max_pixels`` (a bound left ``None`` is not enforced).

    Each side is first rounded to the nearest multiple of ``factor``; if the area then breaks a bound,
    both sides are scaled by one factor and rounded down (for ``max_pixels``) or up (for ``min_pixels``).
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if max_pixels is not None and max_pixels < factor * factor:
        raise ValueError(f"max_pixels={max_pixels} is below one {factor}x{factor} patch")
    if max_pixels is not None and min_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} exceeds max_pixels={max_pixels}")
    out_h, out_w = _multiple(height, factor, "nearest"), _multiple(width, factor, "nearest")
    if max_pixels is not None and out_h * out_w > max_pixels:
        scale = math.sqrt(max_pixels / (height * width))
        out_h, out_w = _multiple(height * scale, factor, "down"), _multiple(width * scale, factor, "down")
        # a very thin frame has its short side clamped up to one patch: shrink the long side to fit
        if out_h * out_w > max_pixels:
            if out_h == factor:
                out_w = _multiple(max_pixels / out_h, factor, "down")
            else:
                out_h = _multiple(max_pixels / out_w, factor, "down")
    elif min_pixels is not None and out_h * out_w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        out_h, out_w = _multiple(height * scale, factor, "up"), _multiple(width * scale, factor, "up")
        if max_pixels is not None and out_h * out_w > max_pixels:
            raise ValueError(
                f"no {factor}-multiple size for {height}x{width} lies within [{min_pixels}, {max_pixels}] pixels"
            )
    return out_h, out_w


def _choose_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "decord" if decord_available() else "pyav"
    if backend == "decord" and not decord_available():
        raise ImportError("backend='decord' was requested but decord is not installed; use 'pyav' or 'auto'")
    return backend


def load_video(
    path: str | os.PathLike,
    sampling: FrameSampling,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
    size_factor: int = 28,
    backend: str = "auto",
) -> DecodedVideo:
    """Decode the sampled frames of ``path``, resized under ``max_pixels``; raise ``VideoDecodeError`` on bad input.

    ``backend="auto"`` uses decord when it is importable and PyAV for a file decord fails on or reads differently
    from the container (logged once per file); "decord" / "pyav" force one.
    """
    path = os.fspath(path)
    chosen = _choose_backend(backend)
    probe = probe_video(path)
    indices = sample_frame_indices(probe.frame_times, probe.duration, sampling)
    unique, inverse = np.unique(indices, return_inverse=True)
    height, width = fit_under_pixels(probe.height, probe.width, max_pixels, min_pixels, size_factor)
    try:
        frames = DECODERS[chosen](probe, unique, height, width)
    except VideoDecodeError as first:
        if backend != "auto" or chosen == "pyav":
            raise
        frames = _decode_with_pyav_after(first, probe, unique, height, width)
    return DecodedVideo(
        path=path,
        frames=frames[inverse],
        timestamps=probe.frame_times[indices],
        source_fps=probe.fps,
        source_num_frames=probe.num_frames,
        source_duration=probe.duration,
    )


def _decode_with_pyav_after(
    failure: VideoDecodeError, probe: VideoProbe, indices: np.ndarray, height: int, width: int
) -> np.ndarray:
    """PyAV's frames for a file decord failed on; a file neither can decode raises with both reasons."""
    try:
        frames = DECODERS["pyav"](probe, indices, height, width)
    except VideoDecodeError as second:
        raise VideoDecodeError(probe.path, f"decord: {failure.reason}; PyAV: {second.reason}") from second
    if probe.path not in _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.add(probe.path)
        logger.warning("%s; decoded it with PyAV instead", failure)
    return frames
