"""MR-SP stage 1: encode a batch's videos with their temporal slices split over the SP group, then all-gather.

Each rank runs the vision tower only on its share (:func:`~longrl.mrsp.frames.plan_frame_shards`); one variable-size
all-gather rebuilds every video's features, in order, on every rank of the group. The result is returned per row
so it can travel with the row for the rest of the step: the ``n`` rollouts, the old/reference log-prob passes and
the update all splice these features instead of running the tower again.

The tower is FSDP-sharded over the whole world, so every rank must run it the same number of times: a rank whose
share is empty (fewer slices than ranks, or no video in its data-parallel share while other ranks have some) runs it
on a one-slice dummy and contributes zero rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
import torch.distributed as dist

from longrl.mrsp.collectives import gather_rows
from longrl.mrsp.frames import SlicePiece, plan_frame_shards
from longrl.mrsp.groups import SequenceParallelGroups

__all__ = ["VideoEncoder", "encode_row_videos"]

PIXEL_KEY, GRID_KEY = "pixel_values_videos", "video_grid_thw"
_IMAGE_KEYS = ("pixel_values", "image_grid_thw")


class VideoEncoder(Protocol):
    """A model's vision tower seen as: patch rows + ``(k, 3)`` grid -> one feature row per merged patch."""

    patches_per_token: int  # unmerged patches per output feature row (Qwen: spatial_merge_size ** 2)

    def __call__(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor: ...

    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest valid input (one temporal slice), for ranks with nothing to encode."""
        ...


def encode_row_videos(
    encoder: VideoEncoder,
    rows: Sequence[Mapping[str, torch.Tensor]],
    groups: SequenceParallelGroups,
    device: torch.device,
    num_chunks: int = 1,
) -> list[torch.Tensor | None]:
    """Per row, the features of its videos in placeholder order (``None`` for a row without video).

    ``rows`` are the per-row vision inputs (``pixel_values_videos`` + ``video_grid_thw``), identical on every rank of
    the SP group. ``num_chunks`` bounds the all-gather's buffers (``worker.rollout.num_chunk_seq``).
    """
    for index, row in enumerate(rows):
        if any(key in row for key in _IMAGE_KEYS):
            raise NotImplementedError(f"row {index} holds image inputs; MR-SP encodes videos only")
    video_rows = [(index, row) for index, row in enumerate(rows) if PIXEL_KEY in row]
    grids = torch.cat([row[GRID_KEY] for _, row in video_rows]) if video_rows else torch.zeros(0, 3, dtype=torch.long)
    if not _anyone_has_video(len(grids) > 0, device):
        return [None] * len(rows)
    pixels = torch.cat([row[PIXEL_KEY] for _, row in video_rows]) if video_rows else None
    mine = plan_frame_shards(grids.tolist(), groups.sp_size)[groups.sp_rank]
    if mine:
        local_pixels, local_grid = _select(pixels, grids, mine)
        local = encoder(local_pixels.to(device), local_grid.to(device))
    else:
        dummy_pixels, dummy_grid = encoder.dummy_inputs(device)
        local = encoder(dummy_pixels, dummy_grid)[:0]
    features = gather_rows(local, groups.group, num_chunks)
    tokens_per_video = (grids.prod(-1) // encoder.patches_per_token).tolist()
    if features.shape[0] != sum(tokens_per_video):
        raise RuntimeError(f"gathered {features.shape[0]} feature rows for grids {grids.tolist()} "
                           f"({sum(tokens_per_video)} expected)")
    per_video = list(torch.split(features, tokens_per_video))
    out: list[torch.Tensor | None] = [None] * len(rows)
    start = 0
    for index, row in video_rows:
        count = row[GRID_KEY].shape[0]
        out[index] = torch.cat(per_video[start : start + count])
        start += count
    return out


def _select(pixels: torch.Tensor, grids: torch.Tensor, pieces: list[SlicePiece]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel rows and grid rows of ``pieces`` (slices of the videos laid out back to back in ``pixels``)."""
    starts = torch.cat([grids.new_zeros(1), grids.prod(-1).cumsum(0)]).tolist()
    parts = []
    for piece in pieces:
        per_slice = piece.height * piece.width
        base = starts[piece.video]
        parts.append(pixels[base + piece.t_start * per_slice : base + piece.t_end * per_slice])
    grid = torch.tensor([[p.t_end - p.t_start, p.height, p.width] for p in pieces], dtype=grids.dtype)
    return torch.cat(parts), grid


def _anyone_has_video(mine: bool, device: torch.device) -> bool:
    """Whether any rank of the world has a video to encode (then every rank must run the FSDP tower)."""
    if not (dist.is_available() and dist.is_initialized()):
        return mine
    flag = torch.tensor([int(mine)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
