"""Read a row's images: size from the header (cheap, for the length check) and RGB pixels resized for the vision grid.

Images follow the frames' contract with the model adapter: each side a multiple of the family's size factor, the area
within ``[data.min_pixels, data.max_pixels]`` (:func:`~longrl.data.video.fit_under_pixels`), resized here with the same
bicubic filter the video frames get, so the processor never rescales them.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from longrl.data.decoders import resize_rgb
from longrl.data.video import fit_under_pixels

__all__ = ["ImageDecodeError", "load_image", "read_image_size"]


class ImageDecodeError(ValueError):
    """An image file that is missing or cannot be decoded; the message names the file."""


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of the image at ``path`` from its header (no pixels are decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image {os.fspath(path)} does not exist") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f"image {os.fspath(path)} is not a readable image: {exc}") from exc
    return height, width


def load_image(path: str | os.PathLike, max_pixels: int | None, min_pixels: int | None,
               size_factor: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of ``path``, resized to the grid size :func:`fit_under_pixels` gives."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image {os.fspath(path)} does not exist") from exc
    except (UnidentifiedImageError, OSError) as exc:  # truncated or corrupt data fails when the pixels are read
        raise ImageDecodeError(f"image {os.fspath(path)} cannot be decoded: {exc}") from exc
    height, width = fit_under_pixels(pixels.shape[0], pixels.shape[1], max_pixels, min_pixels, size_factor)
    return pixels if (height, width) == pixels.shape[:2] else resize_rgb(pixels, height, width)
