"""``torch.load`` for files a user may have been handed: tensors and plain containers only, never code.

A checkpoint directory is often copied from somewhere else; unpickling an arbitrary object from it would run
whatever code the file names. ``weights_only=True`` refuses such files; this wrapper turns torch's refusal into an
error that names the file and says what to do.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(ValueError):
    """A ``.pt`` file holds objects other than tensors and plain Python containers."""


def load_plain(path: str | Path) -> Any:
    """Load ``path`` with ``torch.load(weights_only=True)``; refuse (naming the file) one that would run code."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain containers, and "
            "unpickling them could run arbitrary code. longrl writes only tensors, dicts, lists and numbers; "
            f"delete the file or re-create the checkpoint if you did not write it yourself. (torch: {error})"
        ) from error
