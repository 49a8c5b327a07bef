"""Checkpoint files that are pickles: loaded without running code, saved with honest write errors.

A checkpoint directory is often copied from somewhere else; unpickling an arbitrary object from it would run
whatever code the file names. ``weights_only=True`` refuses such ``.pt`` files, and :func:`load_plain` turns torch's
refusal into an error that names the file. DCP's ``.metadata`` is a plain pickle that torch loads unrestricted, so
:func:`load_dcp_metadata` reads it first, admitting only DCP's own metadata classes, and the loaders call it before
``dcp.load``. :func:`save_plain` serialises in memory and writes with Python's own file I/O, because
torch's file writer reports a full disk as ``unexpected pos 704 vs 598`` and loses the OS error.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.metadata import Metadata

# What a DCP ``.metadata`` pickle may name besides DCP's metadata classes: harmless constructors only.
_DCP_GLOBALS = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
                ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("pathlib", "PosixPath"),
                ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PureWindowsPath")}


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


class _DcpMetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == dcp_metadata.__name__:
            found = getattr(dcp_metadata, name, None)
            if isinstance(found, type) and found.__module__ == module:  # its own classes, not what it imports
                return found
        elif module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        elif (module, name) in _DCP_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not part of DCP checkpoint metadata")


def load_dcp_metadata(dcp_dir: str | Path) -> Metadata:
    """The ``.metadata`` of the DCP checkpoint in ``dcp_dir``, refused (naming the file) if it names anything but
    DCP's metadata classes, tensor sizes, dtypes and paths."""
    path = Path(dcp_dir) / ".metadata"
    try:
        with open(path, "rb") as handle:
            metadata = _DcpMetadataUnpickler(handle).load()
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"refusing to load {path}: it names Python objects outside DCP's checkpoint metadata, and unpickling "
            f"them could run arbitrary code; delete it or re-create the checkpoint if you did not write it yourself. "
            f"({error})"
        ) from error
    if not isinstance(metadata, Metadata):
        raise UnsafeFileError(f"{path} holds a {type(metadata).__name__}, not DCP checkpoint metadata")
    return metadata


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
