"""Per-row vision tensors -> the batched form Hugging Face Qwen-VL models take.

Rows carry their own vision tensors (``pixel_values_videos``, ``video_grid_thw``, ...) because videos differ
in size. A Qwen-VL forward over several rows wants them joined: every video's patches concatenated along the
patch axis, grids stacked, in row order (the model matches them to placeholder tokens in that order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from longrl.protocol import VIDEO_EMBEDS

__all__ = ["MODALITY_OF_PIXELS", "VIDEO_EMBEDS", "VIDEO_PIXELS", "joined_features", "merge_vision_inputs",
           "position_inputs", "splice_features", "without_pixels"]


# The inputs that feed the vision tower -> the modality they encode. Every other vision key (grids, seconds per
# grid) is position information the language model needs even when the features are precomputed.
VIDEO_PIXELS = "pixel_values_videos"
MODALITY_OF_PIXELS = {"pixel_values": "image", VIDEO_PIXELS: "video"}


def merge_vision_inputs(rows: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate each key along dim 0 over ``rows``; rows without vision (``{}``) contribute nothing.

    All rows that have vision inputs must have the same keys: a row missing ``second_per_grid_ts`` while
    another has it would silently shift the later rows' timing onto the wrong video, so it raises instead.
    """
    keys: list[str] | None = None
    first_row = -1
    parts: dict[str, list[torch.Tensor]] = {}
    for index, row in enumerate(rows):
        if not row:
            continue
        if keys is None:
            keys, first_row = sorted(row), index
            parts = {key: [] for key in keys}
        elif sorted(row) != keys:
            missing, extra = sorted(set(keys) - set(row)), sorted(set(row) - set(keys))
            raise KeyError(
                f"vision inputs of row {index} have keys {sorted(row)} but row {first_row} has {keys} "
                f"(row {index} misses {missing}, adds {extra}); every row with vision needs the same keys"
            )
        for key in keys:
            value = row[key]
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                raise TypeError(f"vision input {key!r} of row {index} must be a tensor with a first dimension")
            parts[key].append(value)
    return {key: torch.cat(values, dim=0) for key, values in parts.items()}


def position_inputs(rows: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """:func:`merge_vision_inputs` without the pixels: what a forward over precomputed features still needs."""
    return merge_vision_inputs([without_pixels(row) for row in rows])


def without_pixels(row: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One row's vision inputs minus the pixels, once its features are computed and the tower will not rerun."""
    return {key: value for key, value in row.items() if key not in MODALITY_OF_PIXELS}


def joined_features(per_row: Sequence[torch.Tensor | None], device: torch.device) -> torch.Tensor | None:
    """Rows' video features (``VIDEO_EMBEDS`` entries) concatenated in row order on ``device``; None if no row has any."""
    present = [features for features in per_row if features is not None]
    return torch.cat(present).to(device) if present else None


def splice_features(embeds: torch.Tensor, input_ids: torch.Tensor, placeholder_id: int, features: torch.Tensor,
                    modality: str = "video") -> torch.Tensor:
    """``embeds`` (text embeddings of ``input_ids``) with ``features`` written over the ``placeholder_id`` tokens,
    in row-major order; the counts must agree (a mismatch means the token ids and the vision grids disagree)."""
    placeholders = input_ids == placeholder_id
    if int(placeholders.sum()) != features.shape[0]:
        raise ValueError(
            f"the prompts hold {int(placeholders.sum())} {modality} placeholder tokens but there are "
            f"{features.shape[0]} {modality} features: input_ids and the {modality} grids disagree"
        )
    return embeds.masked_scatter(placeholders.unsqueeze(-1), features.to(embeds.dtype))
