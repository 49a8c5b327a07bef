"""MR-SP stage 1: encode a batch's videos (and images, one slice each) with their temporal slices split over the SP
group, then all-gather.

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

class VideoEncoder(Protocol):
    """A model's vision tower seen as: pixel rows + ``(k, 3)`` grid -> its feature rows, in order.

    A grid row ``(t, h, w)`` is ``t`` temporal slices of ``h * w`` pixel rows each (patches; a family that encodes
    whole frames lays each frame out as one row, grid ``(frames, 1, 1)``). A feature row may be wider than the language
    model's hidden size when the tower gives several feature maps per token (concatenated along the last axis); only
    the family's ``encoder_kwargs`` reads its layout.
    """

    # The (pixels key, grid key) pairs of a row's inputs this tower encodes, in the order their features fill the row's
    # placeholders (e.g. images then video; an image is one temporal slice).
    media_keys: tuple[tuple[str, str], ...]

    def __call__(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor: ...

    def num_tokens(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Feature rows the tower gives for each row of ``grid_thw``."""
        ...

    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest valid input (one temporal slice), for ranks with nothing to encode."""
        ...


def encode_row_videos(
    encoder: VideoEncoder,
    rows: Sequence[Mapping[str, torch.Tensor]],
    groups: SequenceParallelGroups,
    device: torch.device,
    num_chunks: int = 1,
    sharded_tower: bool = True,
) -> list[torch.Tensor | None]:
    """Per row, the features of its images and video in placeholder order (``None`` for a row without either).

    ``rows`` are the per-row inputs (the pixels and grids named by ``encoder.media_keys``), identical on every rank of
    the SP group. An image is one slice, so a row's images are spread over the group like a video's slices.
    ``num_chunks`` bounds the all-gather's buffers (``worker.rollout.num_chunk_seq``). ``sharded_tower=False`` (a tower
    this process holds whole) skips the world-wide agreement on whether to run the tower at all.
    """
    media_rows = [(index, _row_media(row, encoder)) for index, row in enumerate(rows)]
    media_rows = [(index, media) for index, media in media_rows if media is not None]
    grids = (torch.cat([grid for _, (_, grid) in media_rows]) if media_rows
             else torch.zeros(0, 3, dtype=torch.long))
    if not _anyone_has_video(len(grids) > 0, device, sharded_tower):
        return [None] * len(rows)
    pixels = torch.cat([row_pixels for _, (row_pixels, _) in media_rows]) if media_rows else None
    mine = plan_frame_shards(grids.tolist(), groups.sp_size)[groups.sp_rank]
    if mine:
        local_pixels, local_grid = _select(pixels, grids, mine)
        local = encoder(local_pixels.to(device), local_grid.to(device))
    else:
        dummy_pixels, dummy_grid = encoder.dummy_inputs(device)
        local = encoder(dummy_pixels, dummy_grid)[:0]
    features = gather_rows(local, groups.group, num_chunks)
    tokens_per_video = encoder.num_tokens(grids).tolist()
    if features.shape[0] != sum(tokens_per_video):
        raise RuntimeError(f"gathered {features.shape[0]} feature rows for grids {grids.tolist()} "
                           f"({sum(tokens_per_video)} expected)")
    per_video = list(torch.split(features, tokens_per_video))
    out: list[torch.Tensor | None] = [None] * len(rows)
    start = 0
    for index, (_, row_grid) in media_rows:
        count = row_grid.shape[0]
        out[index] = torch.cat(per_video[start : start + count])
        start += count
    return out


def _row_media(row: Mapping[str, torch.Tensor], encoder: VideoEncoder) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A row's pixels and grids in placeholder order; None without any."""
    present = [(row[pixel_key], row[grid_key]) for pixel_key, grid_key in encoder.media_keys if pixel_key in row]
    if not present:
        return None
    return torch.cat([pixels for pixels, _ in present]), torch.cat([grid for _, grid in present])


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


def _anyone_has_video(mine: bool, device: torch.device, sharded_tower: bool = True) -> bool:
    """Whether any rank of the world has a video to encode (then every rank must run the FSDP tower); only this
    rank's answer for a tower that is not sharded."""
    if not (sharded_tower and dist.is_available() and dist.is_initialized()):
        return mine
    flag = torch.tensor([int(mine)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
