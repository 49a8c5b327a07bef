"""Per-row model inputs (pixels, grids, audio frames) -> the batched form a Hugging Face multimodal forward takes.

Rows carry their own inputs because media differ in size. A forward over several rows wants them joined: every
medium's tensors concatenated along their first axis, in row order (the model matches them to placeholder tokens in
that order); keys whose last axis is a per-row length (an audio's frames) are right-padded to the longest first. Which
key belongs to which medium, and which keys feed a tower, is the family's table (:class:`~longrl.models.InputKeys`,
``adapter.input_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from longrl.models.input_keys import InputKeys
from longrl.protocol import VIDEO_EMBEDS

__all__ = ["VIDEO_EMBEDS", "has_pixels", "joined_features", "merge_vision_inputs", "placeholder_tokens",
           "position_inputs", "splice_features", "without_pixels"]


def merge_vision_inputs(rows: Sequence[Mapping[str, torch.Tensor]], keys: InputKeys) -> dict[str, torch.Tensor]:
    """Concatenate each key along dim 0 over the rows that have it, in row order; rows without inputs (``{}``) or
    without one medium contribute nothing to its keys. ``keys.padded`` are right-padded to the longest row first.

    A row may lack a medium entirely (an image-only row beside a video row), but every row with a medium must carry
    the same keys of it: a video row missing its seconds per grid while another has them would silently shift the
    later rows' timing onto the wrong video. A mismatch raises ``KeyError`` naming both rows. (Keys the family does
    not declare form one more group.)
    """
    first_seen: dict[str, tuple[int, list[str]]] = {}  # medium -> (first row with it, its keys there)
    parts: dict[str, list[torch.Tensor]] = {}
    for index, row in enumerate(rows):
        by_medium: dict[str, list[str]] = {}
        for key in sorted(row):
            by_medium.setdefault(keys.medium(key), []).append(key)
        for medium, row_keys in by_medium.items():
            first_row, expected = first_seen.setdefault(medium, (index, row_keys))
            if row_keys != expected:
                missing, extra = sorted(set(expected) - set(row_keys)), sorted(set(row_keys) - set(expected))
                raise KeyError(
                    f"vision inputs of row {index} have {medium} keys {row_keys} but row {first_row} has {expected} "
                    f"(row {index} misses {missing}, adds {extra}); every row with {medium} needs the same keys"
                )
        for key in sorted(row):
            value = row[key]
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                raise TypeError(f"vision input {key!r} of row {index} must be a tensor with a first dimension")
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(_padded(values) if key in keys.padded else values, dim=0) for key, values in parts.items()}


def _padded(values: list[torch.Tensor]) -> list[torch.Tensor]:
    longest = max(value.shape[-1] for value in values)
    return [torch.nn.functional.pad(value, (0, longest - value.shape[-1])) for value in values]


def position_inputs(rows: Sequence[Mapping[str, torch.Tensor]], keys: InputKeys) -> dict[str, torch.Tensor]:
    """:func:`merge_vision_inputs` without the pixels: what a forward over precomputed features still needs."""
    return merge_vision_inputs([without_pixels(row, keys) for row in rows], keys)


def without_pixels(row: Mapping[str, torch.Tensor], keys: InputKeys) -> dict[str, torch.Tensor]:
    """One row's inputs minus those a tower encodes, once its features are computed and the tower will not rerun."""
    return {key: value for key, value in row.items() if key not in keys.towers}


def has_pixels(row: Mapping[str, torch.Tensor], keys: InputKeys) -> bool:
    """Whether a row's inputs hold anything for a tower (pixels of images or video, audio frames)."""
    return any(key in keys.towers for key in row)


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
    if features.shape[-1] != embeds.shape[-1]:
        raise ValueError(f"{modality} feature rows of width {features.shape[-1]} cannot replace embeddings of width "
                         f"{embeds.shape[-1]}: this family's features carry more than an input embedding (e.g. "
                         "deepstack levels), so they reach the model only through its adapter's encoder_kwargs")
    placeholders = torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))
    if int(placeholders.sum()) != features.shape[0]:
        raise ValueError(
            f"the prompts hold {int(placeholders.sum())} {modality} placeholder tokens but there are "
            f"{features.shape[0]} {modality} features: input_ids and the {modality} grids disagree"
        )
    return embeds.masked_scatter(placeholders.unsqueeze(-1), features.to(embeds.dtype))
