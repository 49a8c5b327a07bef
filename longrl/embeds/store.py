"""Video embeddings on local disk: one safetensors file per key, written atomically, verified on every read.

Layout: ``<root>/<key[:2]>/<key>.safetensors`` holding ``features`` (one row per visual token, in the tower's dtype),
``timestamps`` when known (the sampled frames' times) and, under their own names, the row's position inputs (its
grid and whatever else the family's prompt needs beside the pixels); the metadata holds the key's description (see
:mod:`longrl.embeds.key`) and a SHA-256 checksum of the tensors.

Writers never share a file: each writes its own temporary file in the entry's folder and renames it over the entry
(``os.replace`` is atomic on one filesystem), so readers see either no entry or a whole one, and two ranks or nodes
writing the same key leave one valid entry. A file that fails to parse, lacks a tensor, carries another description
or fails its checksum is reported (a warning naming the file and the reason), removed, and read as a miss, so the
caller recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from longrl.embeds.key import hash_tensor

__all__ = ["CachedVideo", "EmbeddingStore"]

logger = logging.getLogger(__name__)
_FORMAT = "longrl-video-embeds/1"
_FEATURES, _TIMESTAMPS = "features", "timestamps"


@dataclass
class CachedVideo:
    """One video's feature rows and what its prompt needs beside them: the row's position inputs (grid, ...; the
    family's ``input_keys.positions``) and the sampled frames' times (seconds), for families whose prompt shows them."""

    features: torch.Tensor
    positions: dict[str, torch.Tensor]
    timestamps: torch.Tensor | None = None

    @classmethod
    def from_row(cls, features: torch.Tensor, positions: Mapping[str, torch.Tensor],
                 timestamps: Any = None) -> CachedVideo:
        """The entry of a row just encoded live: its features, its inputs without the pixels (``without_pixels``),
        its frames' timestamps."""
        return cls(features.detach().cpu(), dict(positions),
                   None if timestamps is None else torch.as_tensor(timestamps, dtype=torch.float64))

    def tensors(self) -> dict[str, torch.Tensor]:
        if {_FEATURES, _TIMESTAMPS} & set(self.positions):
            raise ValueError(f"position inputs may not be named {_FEATURES!r} or {_TIMESTAMPS!r}")
        named = {_FEATURES: self.features, _TIMESTAMPS: self.timestamps, **self.positions}
        return {name: value.detach().cpu().contiguous() for name, value in named.items() if value is not None}


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        hash_tensor(digest, name, tensors[name])
    return digest.hexdigest()


class EmbeddingStore:
    """The cache directory ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def contains(self, key: str) -> bool:
        """Whether an entry file exists (not verified: :meth:`get` verifies)."""
        return self.path(key).is_file()

    def put(self, key: str, description: dict[str, Any], video: CachedVideo) -> int:
        """Write the entry atomically; returns the bytes written."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tensors = video.tensors()
        metadata = {"format": _FORMAT, "key": key, "description": json.dumps(description, sort_keys=True),
                    "checksum": _checksum(tensors)}
        staging = target.parent / f".{key}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            save_file(tensors, str(staging), metadata=metadata)
            with open(staging, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        return target.stat().st_size

    def get(self, key: str, description: dict[str, Any]) -> CachedVideo | None:
        """The verified entry for ``key``, or None (missing, or bad: then reported and removed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        problem = None
        try:
            tensors, metadata = _read(path)
        except (SafetensorError, OSError, ValueError) as error:
            problem = f"unreadable ({error})"
        else:
            if metadata.get("format") != _FORMAT or metadata.get("key") != key:
                problem = f"not an entry for this key (format {metadata.get('format')!r}, key {metadata.get('key')!r})"
            elif metadata.get("description") != json.dumps(description, sort_keys=True):
                problem = "written for another video, sampling or vision tower"
            elif _FEATURES not in tensors:
                problem = f"incomplete (tensors {sorted(tensors)})"
            elif metadata.get("checksum") != _checksum(tensors):
                problem = "checksum mismatch (corrupted)"
        if problem is not None:
            logger.warning("embedding cache: %s is %s; removing it, the video is encoded again", path, problem)
            path.unlink(missing_ok=True)
            return None
        features, timestamps = tensors.pop(_FEATURES), tensors.pop(_TIMESTAMPS, None)
        return CachedVideo(features, tensors, timestamps)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return load_file(str(path)), metadata
