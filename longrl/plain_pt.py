"""``.pt`` files of tensors and plain containers: loaded without running code, saved with honest write errors.

A checkpoint directory is often copied from somewhere else; unpickling an arbitrary object from it would run
whatever code the file names. ``weights_only=True`` refuses such files; :func:`load_plain` turns torch's refusal into
an error that names the file. :func:`save_plain` serialises in memory and writes with Python's own file I/O, because
torch's file writer reports a full disk as ``unexpected pos 704 vs 598`` and loses the OS error.
"""

from __future__ import annotations

import io
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


def save_plain(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path``; a failing write raises the OS error (``ENOSPC``, ``EFBIG``) naming ``path``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_file(path, buffer.getbuffer())


def write_file(path: str | Path, data: bytes | memoryview | str) -> None:
    """Write ``data`` to ``path``; the ``OSError`` of a failing write names the file (Python's ``write`` does not)."""
    try:
        with open(path, "w" if isinstance(data, str) else "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from error
