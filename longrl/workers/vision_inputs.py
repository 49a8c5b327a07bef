"""Per-row vision (and audio) tensors -> the batched form Hugging Face Qwen-VL / Qwen-Omni models take.

Rows carry their own vision tensors (``pixel_values_videos``, ``video_grid_thw``, ...) because videos differ
in size. A Qwen-VL forward over several rows wants them joined: every video's patches concatenated along the
patch axis, grids stacked, in row order (the model matches them to placeholder tokens in that order). Audio
(``input_features`` ``(audios, mel, frames)`` with its ``feature_attention_mask``) is batched as the processor batches
it: right-padded along the frames to the longest audio, then stacked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from longrl.mrsp.audio import AUDIO_FRAMES, AUDIO_MASK
from longrl.protocol import VIDEO_EMBEDS

__all__ = ["MODALITY_OF_PIXELS", "VIDEO_EMBEDS", "VIDEO_PIXELS", "has_pixels", "joined_features",
           "merge_vision_inputs", "placeholder_tokens", "position_inputs", "splice_features", "without_pixels"]


# The inputs that feed a tower -> the modality they encode. Every other key (grids, seconds per grid, the audio's
# frame mask) is position information the language model needs even when the features are precomputed.
VIDEO_PIXELS = "pixel_values_videos"
MODALITY_OF_PIXELS = {"pixel_values": "image", VIDEO_PIXELS: "video", AUDIO_FRAMES: "audio"}


# Which medium each known vision key describes. A row may lack a medium entirely (an image-only row beside a video
# row), but a row with a medium must have all of that medium's keys the other rows have: a video row missing
# second_per_grid_ts while another has it would silently shift the later rows' timing onto the wrong video. Keys not
# listed here (other families' inputs) form one more group.
_MEDIUM_OF_KEY = {"pixel_values": "image", "image_grid_thw": "image", VIDEO_PIXELS: "video", "video_grid_thw": "video",
                  "second_per_grid_ts": "video", "video_second_per_grid": "video", AUDIO_FRAMES: "audio",
                  AUDIO_MASK: "audio"}
# Keys whose last axis is a per-row length (an audio's frames): right-padded with zeros to the longest row first.
_PADDED_KEYS = (AUDIO_FRAMES, AUDIO_MASK)


def merge_vision_inputs(rows: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate each key along dim 0 over the rows that have it, in row order; rows without vision (``{}``) or
    without one medium contribute nothing to its keys. Audio keys are right-padded to the longest audio first.

    Every row with a medium must carry the same keys of it (see ``_MEDIUM_OF_KEY``); a mismatch raises ``KeyError``
    naming both rows.
    """
    first_seen: dict[str, tuple[int, list[str]]] = {}  # medium -> (first row with it, its keys there)
    parts: dict[str, list[torch.Tensor]] = {}
    for index, row in enumerate(rows):
        by_medium: dict[str, list[str]] = {}
        for key in sorted(row):
            by_medium.setdefault(_MEDIUM_OF_KEY.get(key, "other"), []).append(key)
        for medium, keys in by_medium.items():
            first_row, expected = first_seen.setdefault(medium, (index, keys))
            if keys != expected:
                missing, extra = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
                raise KeyError(
                    f"vision inputs of row {index} have {medium} keys {keys} but row {first_row} has {expected} "
                    f"(row {index} misses {missing}, adds {extra}); every row with {medium} needs the same keys"
                )
        for key in sorted(row):
            value = row[key]
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                raise TypeError(f"vision input {key!r} of row {index} must be a tensor with a first dimension")
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(_padded(values) if key in _PADDED_KEYS else values, dim=0) for key, values in parts.items()}


def _padded(values: list[torch.Tensor]) -> list[torch.Tensor]:
    longest = max(value.shape[-1] for value in values)
    return [torch.nn.functional.pad(value, (0, longest - value.shape[-1])) for value in values]


def position_inputs(rows: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """:func:`merge_vision_inputs` without the pixels: what a forward over precomputed features still needs."""
    return merge_vision_inputs([without_pixels(row) for row in rows])


def without_pixels(row: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One row's vision inputs minus the pixels, once its features are computed and the tower will not rerun."""
    return {key: value for key, value in row.items() if key not in MODALITY_OF_PIXELS}


def has_pixels(row: Mapping[str, torch.Tensor]) -> bool:
    """Whether a row's vision inputs hold pixels (images or video) or audio frames for a tower."""
    return any(key in row for key in MODALITY_OF_PIXELS)


def placeholder_tokens(input_ids: torch.Tensor, placeholder_ids: Sequence[int]) -> torch.Tensor:
    """The token id at each placeholder of ``input_ids``, in row-major order: what tells a family's ``encoder_kwargs``
    which feature rows are images and which video."""
    return input_ids[torch.isin(input_ids, torch.tensor(list(placeholder_ids), device=input_ids.device))]


def joined_features(per_row: Sequence[torch.Tensor | None], device: torch.device) -> torch.Tensor | None:
    """Rows' visual features (``VIDEO_EMBEDS`` entries) concatenated in row order on ``device``; None if no row has any."""
    present = [features for features in per_row if features is not None]
    return torch.cat(present).to(device) if present else None


def splice_features(embeds: torch.Tensor, input_ids: torch.Tensor, placeholder_id: int | Sequence[int],
                    features: torch.Tensor, modality: str = "video") -> torch.Tensor:
    """``embeds`` (text embeddings of ``input_ids``) with ``features`` written over the ``placeholder_id`` tokens (one
    id, or several filled from one stream), in row-major order; the counts must agree (a mismatch means the token ids
    and the vision grids disagree)."""
    ids = [placeholder_id] if isinstance(placeholder_id, int) else list(placeholder_id)
    placeholders = torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))
    if int(placeholders.sum()) != features.shape[0]:
        raise ValueError(
            f"the prompts hold {int(placeholders.sum())} {modality} placeholder tokens but there are "
            f"{features.shape[0]} {modality} features: input_ids and the {modality} grids disagree"
        )
    return embeds.masked_scatter(placeholders.unsqueeze(-1), features.to(embeds.dtype))
