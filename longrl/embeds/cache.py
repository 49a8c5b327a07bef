"""The embedding cache as a run uses it: keys from the run's config, entries read by the data layer, misses written
back by the workers after they encode them live.

Enabled by ``data.cache_dir`` (or Long-RL's ``worker.actor.cached_embeds_dir``; both may be set only to the same
directory). It holds features of the frozen vision tower, so a run that trains the tower cannot use it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from longrl.config.schema import RootConfig
from longrl.data.frames import frame_max_pixels, frame_sampling
from longrl.embeds.key import EmbeddingKeyer, tower_fingerprint
from longrl.embeds.store import CachedVideo, EmbeddingStore
from longrl.models.registry import ModelAdapter

__all__ = ["EmbeddingCache", "cache_root", "write_back"]


def cache_root(cfg: RootConfig) -> str | None:
    """The cache directory the config names, if any."""
    return cfg.data.cache_dir or cfg.worker.actor.cached_embeds_dir


@dataclass(frozen=True)
class EmbeddingCache:
    """The store plus the keyer of this run (sampling, pixel limits and tower fixed by the config)."""

    store: EmbeddingStore
    keyer: EmbeddingKeyer

    @classmethod
    def from_config(cls, cfg: RootConfig, adapter: ModelAdapter) -> EmbeddingCache | None:
        root = cache_root(cfg)
        if root is None:
            return None
        if not adapter.serves_embedding_cache:
            reason = ("it takes no video" if not adapter.supports_video else
                      "its adapter's serves_embedding_cache is False: it cannot rebuild a prompt from a cached video")
            raise ValueError(f"the embedding cache does not serve model family {adapter.family!r}: run without "
                             f"data.cache_dir / worker.actor.cached_embeds_dir ({reason})")
        if adapter.vision_weight_marker is None:
            raise ValueError(f"model family {adapter.family!r} serves the embedding cache but its adapter names no "
                             "vision_weight_marker, so the cache cannot fingerprint its vision tower")
        rollout = cfg.worker.rollout
        keyer = EmbeddingKeyer(frame_sampling(rollout), frame_max_pixels(cfg.data, rollout, adapter),
                               cfg.data.min_pixels, adapter.video_size_factor,
                               tower_fingerprint(cfg.worker.actor.model.model_path, adapter.vision_weight_marker))
        return cls(EmbeddingStore(root), keyer)

    def entry(self, video_path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
        """``(key, description)`` of ``video_path``'s entry."""
        description = self.keyer.describe(video_path)
        return self.keyer.digest(description), description

    def load(self, entry: tuple[str, dict[str, Any]]) -> CachedVideo | None:
        return self.store.get(*entry)


def write_back(store: EmbeddingStore, entries: Sequence[tuple[str, dict[str, Any]] | None],
               vision_rows: Sequence[dict[str, torch.Tensor]], features: Sequence[torch.Tensor | None],
               timestamps: Sequence[Any], encoded: Sequence[int]) -> int:
    """Store the rows in ``encoded`` (indices of rows just encoded live) that have an entry; returns bytes written.

    Rows of one prompt share an entry; it is written once.
    """
    written, done = 0, set()
    for index in encoded:
        entry, feature = entries[index], features[index]
        if entry is None or feature is None or entry[0] in done:
            continue
        written += store.put(*entry, CachedVideo.from_row(feature, vision_rows[index], timestamps[index]))
        done.add(entry[0])
    return written
