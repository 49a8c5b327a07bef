"""Per-row vision tensors -> the batched form Hugging Face Qwen-VL models take.

Rows carry their own vision tensors (``pixel_values_videos``, ``video_grid_thw``, ...) because videos differ
in size. A Qwen-VL forward over several rows wants them joined: every video's patches concatenated along the
patch axis, grids stacked, in row order (the model matches them to placeholder tokens in that order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["merge_vision_inputs"]


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
