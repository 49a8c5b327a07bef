"""Frames that show their own index in binary, so a test can tell from decoded pixels which frames it got.

Eight vertical bars, most significant bit on the left, white for 1 and black for 0: indices up to 255 survive lossy
encoding and resizing to any width that is a multiple of eight.
"""

from __future__ import annotations

import numpy as np

INDEX_BITS = 8


def index_frame(index: int, size: int = 112) -> np.ndarray:
    """A ``size`` x ``size`` RGB frame showing ``index``."""
    bar = size // INDEX_BITS
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for bit in range(INDEX_BITS):
        if index >> (INDEX_BITS - 1 - bit) & 1:
            image[:, bit * bar : (bit + 1) * bar] = 255
    return image


def read_index(frame: np.ndarray) -> int:
    """The index a decoded :func:`index_frame` shows, read from the middle half of each bar."""
    bar = frame.shape[1] / INDEX_BITS
    gray = frame.astype(np.float64).mean(axis=2)
    bits = [gray[:, int(b * bar + bar / 4) : int(b * bar + 3 * bar / 4)].mean() > 128 for b in range(INDEX_BITS)]
    return sum(1 << (INDEX_BITS - 1 - bit) for bit, on in enumerate(bits) if on)
