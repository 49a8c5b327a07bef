"""What a cached video embedding depends on, reduced to one key.

An entry is valid only for the same video file (path, size, modification time), the same frame sampling and pixel
limits (they decide which frames, at which size, reach the tower) and the same vision tower (its config and the bytes
of its weights in the checkpoint). All of it goes into a canonical JSON description whose SHA-256 is the key, so a
change to any part (another model, another ``num_video_frames``, an edited video) lands on another key and a stale
entry is simply never found. The description is also stored in the entry and compared on read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from longrl.data.video import FrameSampling

__all__ = ["EmbeddingKeyer", "hash_tensor", "tower_fingerprint", "video_source"]

# Config fields a re-save adds or changes without changing what the tower computes (the weights' dtype is hashed
# with the weights).
_BOOKKEEPING = {"dtype", "torch_dtype", "transformers_version", "_name_or_path"}


def hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    """Feed ``name``, dtype, shape and the raw bytes of ``tensor`` into ``digest`` (a hashlib object)."""
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
    digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())


def video_source(path: str | os.PathLike) -> dict[str, Any]:
    """The file's identity: resolved path, size and modification time (ns); an edit or a replacement changes it."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def tower_fingerprint(model_dir: str | os.PathLike, weight_marker: str) -> str:
    """SHA-256 over the vision config and every checkpoint tensor whose name contains ``weight_marker`` (name, dtype,
    shape, bytes), read from the safetensors files; memoised per (directory, files' sizes and times)."""
    directory = Path(model_dir).resolve()
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {directory}: the embedding cache fingerprints the vision tower "
                                "from the checkpoint's files")
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _fingerprint(str(directory), weight_marker, stamp)


@lru_cache(maxsize=16)
def _fingerprint(directory: str, weight_marker: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    vision = json.loads((Path(directory) / "config.json").read_text()).get("vision_config", {})
    vision = {key: value for key, value in vision.items() if key not in _BOOKKEEPING}
    digest.update(json.dumps(vision, sort_keys=True).encode())
    found = 0
    for name, _, _ in stamp:
        with safe_open(str(Path(directory) / name), framework="pt") as handle:
            for key in sorted(k for k in handle.keys() if weight_marker in k):
                hash_tensor(digest, key, handle.get_tensor(key))
                found += 1
    if not found:
        raise ValueError(f"no tensor named like '*{weight_marker}*' in the checkpoint of {directory}: "
                         "nothing to fingerprint the vision tower by")
    return digest.hexdigest()


@dataclass(frozen=True)
class EmbeddingKeyer:
    """Keys for one run's videos: fixed sampling, pixel limits and tower; only the video varies."""

    sampling: FrameSampling
    max_pixels: int
    min_pixels: int
    size_factor: int
    tower: str

    def describe(self, video_path: str | os.PathLike) -> dict[str, Any]:
        """The canonical description of ``video_path``'s entry (stored with it, compared on read)."""
        return {
            "video": video_source(video_path),
            "sampling": {"num_frames": self.sampling.num_frames, "fps": self.sampling.fps,
                         "max_frames": self.sampling.max_frames},
            "pixels": {"max": self.max_pixels, "min": self.min_pixels, "size_factor": self.size_factor},
            "tower": self.tower,
        }

    @staticmethod
    def digest(description: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
