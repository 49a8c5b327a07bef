"""Stage 1 planning: which temporal slices of which videos each SP rank encodes. Pure bookkeeping, no torch.

A video is a grid of ``t x h x w`` patches (as the patching towers lay it out); its pixel rows are laid out slice by slice (``h * w`` rows per
temporal slice of ``temporal_patch_size`` frames), and the vision tower attends only within a slice. So any run of
whole slices can be encoded on its own and the outputs concatenated: splitting over ranks on slice boundaries is
exact. A frame count that is not a multiple of the temporal patch size was already padded into a last whole slice
by the processor, so the unit here is always a slice.

All slices of a batch, video after video, are dealt out in one contiguous run per rank, balanced by patch count
(videos may have different sizes and lengths). Contiguous runs mean that concatenating the ranks' outputs in rank
order gives the videos' features in their original order, with no reindexing. A video may span several ranks, a
rank may hold pieces of several videos, and a rank may get nothing (fewer slices than ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SlicePiece", "plan_frame_shards"]


@dataclass(frozen=True)
class SlicePiece:
    """Temporal slices ``[t_start, t_end)`` of video ``video`` (grid ``t x height x width``)."""

    video: int
    t_start: int
    t_end: int
    height: int
    width: int

    @property
    def patches(self) -> int:
        return (self.t_end - self.t_start) * self.height * self.width


def plan_frame_shards(grids: Sequence[Sequence[int]], sp_size: int) -> list[list[SlicePiece]]:
    """For each of ``sp_size`` ranks, its pieces, in order; ``grids`` holds ``(t, h, w)`` per video."""
    if sp_size < 1:
        raise ValueError(f"sp_size must be >= 1, got {sp_size}")
    units = [(video, t, int(h) * int(w)) for video, (t_count, h, w) in enumerate(grids) for t in range(int(t_count))]
    total = sum(cost for *_, cost in units)
    owners: list[int] = []
    done = 0
    for *_, cost in units:
        # The rank whose equal share of the total cost contains this slice's midpoint: monotone, so contiguous.
        owners.append(min(sp_size - 1, int((done + cost / 2) * sp_size // total)) if total else 0)
        done += cost
    shards: list[list[SlicePiece]] = [[] for _ in range(sp_size)]
    for (video, t, _), owner in zip(units, owners):
        pieces = shards[owner]
        if pieces and pieces[-1].video == video and pieces[-1].t_end == t:
            last = pieces[-1]
            pieces[-1] = SlicePiece(video, last.t_start, t + 1, last.height, last.width)
        else:
            _, h, w = grids[video]
            pieces.append(SlicePiece(video, t, t + 1, int(h), int(w)))
    return shards
