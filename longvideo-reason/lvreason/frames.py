"""A video as the image parts of an OpenAI-style chat message.

Chat-completions endpoints take images, not videos, so a clip is sent as ``num_frames`` frames spread evenly over it,
decoded with longrl's video loader (the same sampling and pixel budget the trainer uses) and encoded as base64 data
URLs.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from longrl.data.video import FrameSampling, load_video

_MIME = {"jpeg": "image/jpeg", "png": "image/png"}


def frame_data_urls(path: str, num_frames: int, max_pixels: int, image_format: str = "jpeg") -> list[str]:
    """``num_frames`` evenly spaced frames of ``path`` (each under ``max_pixels``) as ``data:`` URLs."""
    if image_format not in _MIME:
        raise ValueError(f"image_format must be one of {sorted(_MIME)}, got {image_format!r}")
    video = load_video(path, FrameSampling(num_frames=num_frames), max_pixels=max_pixels, size_factor=2)
    urls = []
    for frame in video.frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format=image_format.upper())
        urls.append(f"data:{_MIME[image_format]};base64,{base64.b64encode(buffer.getvalue()).decode()}")
    return urls


def image_parts(urls: list[str]) -> list[dict]:
    """Chat content parts for ``urls``, in order."""
    return [{"type": "image_url", "image_url": {"url": url}} for url in urls]
