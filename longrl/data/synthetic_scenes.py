"""Drawing and encoding for the synthetic long-video tasks.

A scene is a list of frames; a frame is a tuple of ``Sprite`` (flat-coloured shapes on a dark background),
positioned in units of the frame size so one scene renders at any resolution. Large flat blocks of
saturated, well-separated colours survive H.264 + 4:2:0 chroma subsampling, so the ground truth stays
recoverable from decoded pixels (the tests do exactly that).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

BACKGROUND = (20, 20, 20)

# Far apart in RGB and in chroma, so a decoded pixel's nearest palette colour is the drawn one.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 70, 240),
    "yellow": (245, 225, 30),
    "magenta": (225, 40, 225),
    "cyan": (30, 215, 225),
    "white": (240, 240, 240),
}

SHAPES = ("square", "circle", "triangle")

# libx264 keyframe interval: short enough that decoders must seek between GOPs in a long video.
_GOP_FRAMES = 32


@dataclass(frozen=True)
class Sprite:
    """A filled shape: centre (cy, cx) and half extents in fractions of the frame side."""

    shape: str  # one of SHAPES
    colour: str  # a PALETTE key
    cy: float
    cx: float
    half_h: float
    half_w: float


Frame = tuple[Sprite, ...]


def _shape_mask(sprite: Sprite, size: int) -> tuple[slice, slice, np.ndarray]:
    """Pixel box of the sprite and the mask of its shape inside that box."""
    top = max(0, round((sprite.cy - sprite.half_h) * size))
    bottom = min(size, round((sprite.cy + sprite.half_h) * size))
    left = max(0, round((sprite.cx - sprite.half_w) * size))
    right = min(size, round((sprite.cx + sprite.half_w) * size))
    # normalised coordinates of pixel centres inside the box, in [-1, 1] across the sprite
    ys = ((np.arange(top, bottom) + 0.5) / size - sprite.cy) / sprite.half_h
    xs = ((np.arange(left, right) + 0.5) / size - sprite.cx) / sprite.half_w
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    if sprite.shape == "square":
        mask = np.ones(yy.shape, dtype=bool)
    elif sprite.shape == "circle":
        mask = yy**2 + xx**2 <= 1.0
    elif sprite.shape == "triangle":  # apex up, base on the bottom edge
        mask = np.abs(xx) <= (yy + 1.0) / 2.0
    else:
        raise ValueError(f"unknown shape {sprite.shape!r}; expected one of {SHAPES}")
    return slice(top, bottom), slice(left, right), mask


def render_frame(sprites: Frame, size: int) -> np.ndarray:
    """Draw ``sprites`` in order (later ones on top) on a ``size`` x ``size`` background; uint8 RGB."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for sprite in sprites:
        rows, cols, mask = _shape_mask(sprite, size)
        image[rows, cols][mask] = PALETTE[sprite.colour]
    return image


def render_scene(scene: Iterable[Frame], size: int) -> Iterable[np.ndarray]:
    """Frames of a scene, rendered one at a time (a long video never sits in memory at once)."""
    return (render_frame(frame, size) for frame in scene)


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, faststart: bool = True) -> None:
    """Encode RGB frames as H.264 (libx264, yuv420p) in an mp4.

    ``faststart`` puts the index before the frame data, as downloaded videos usually have it. One encoder
    thread makes the bytes depend only on the frames (same scene -> identical file).
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to write to {os.fspath(path)!r}")
    height, width = first.shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(os.fspath(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = _GOP_FRAMES
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "medium", "threads": "1"}
        for image in itertools.chain([first], frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))

