"""Decode a video into a fixed set of sampled, resized RGB frames.

``load_video`` = probe the container (``decoders.probe_video``: rejects missing, empty, corrupt and
truncated files before any decoder touches them) -> choose frame indices (``sample_frame_indices``) ->
decode only those frames with decord (PyAV where decord is missing or disagrees with the container) ->
resize every frame to one size under a pixel budget (``fit_under_pixels``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from longrl.data.decoders import (
    DECODERS,
    DecoderDisagreesError,
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
    "fit_under_pixels",
    "load_video",
    "probe_video",
    "sample_frame_indices",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video to keep: exactly ``num_frames`` spread uniformly, or ``fps`` frames per
    second of video time capped at ``max_frames`` (spread uniformly over the whole video when the cap bites).
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

    @property
    def sampled_fps(self) -> float:
        """Sampled frames per second of source video (T / duration): the fps Qwen2.5-VL's processor expects."""
        duration = self.source_num_frames / self.source_fps
        return len(self.frames) / duration


def _uniform_indices(total_frames: int, count: int) -> np.ndarray:
    """``count`` indices from 0 to total_frames - 1, evenly spaced, rounded half up (repeats if count > total)."""
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    positions = np.arange(count, dtype=np.float64) * (total_frames - 1) / (count - 1)
    return np.floor(positions + 0.5).astype(np.int64)


def sample_frame_indices(total_frames: int, source_fps: float, sampling: FrameSampling) -> np.ndarray:
    """Indices (int64, non-decreasing) of the frames to keep from a video of ``total_frames`` at ``source_fps``.

    By count: ``num_frames`` indices spread evenly from the first to the last frame (a video shorter than
    ``num_frames`` repeats frames, so the count is always exact). By rate: frame ``floor(k * source_fps /
    fps)`` for k = 0, 1, ... while inside the video; a rate above ``source_fps`` keeps every frame once.
    When that gives more than ``max_frames``, ``max_frames`` frames are spread evenly instead.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not source_fps > 0:
        raise ValueError(f"source_fps must be > 0, got {source_fps}")
    if sampling.num_frames is not None:
        return _uniform_indices(total_frames, sampling.num_frames)
    step = source_fps / min(sampling.fps, source_fps)  # source frames per sample, >= 1
    # the small slack keeps exact multiples (e.g. 20 frames at step 2.0000000001) from losing a sample
    count = math.ceil(total_frames / step - 1e-9)
    if count > sampling.max_frames:
        return _uniform_indices(total_frames, sampling.max_frames)
    return np.floor(np.arange(count, dtype=np.float64) * step + 1e-9).astype(np.int64)


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

    ``backend="auto"`` uses decord when it is importable and falls back to PyAV for a file whose frame
    count or timestamps decord reads differently from the container; "decord" / "pyav" force one.
    """
    path = os.fspath(path)
    chosen = _choose_backend(backend)
    probe = probe_video(path)
    indices = sample_frame_indices(probe.num_frames, probe.fps, sampling)
    unique, inverse = np.unique(indices, return_inverse=True)
    height, width = fit_under_pixels(probe.height, probe.width, max_pixels, min_pixels, size_factor)
    try:
        frames = DECODERS[chosen](probe, unique, height, width)
    except DecoderDisagreesError as err:
        if backend != "auto":
            raise
        logger.warning("%s; decoding it with PyAV instead", err)
        frames = DECODERS["pyav"](probe, unique, height, width)
    return DecodedVideo(
        path=path,
        frames=frames[inverse],
        timestamps=probe.frame_times[indices],
        source_fps=probe.fps,
        source_num_frames=probe.num_frames,
    )
