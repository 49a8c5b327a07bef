"""Group filters for DAPO dynamic sampling / EasyR1 online filtering.

A group whose rollouts all succeed or all fail has zero advantage under group-relative estimators, so it
only dilutes the batch; these filters pick whole groups (by prompt uid, groups need not be contiguous) to
keep. They return a numpy bool keep-mask over samples, usable to index tensors and non-tensor arrays alike.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch

from longrl.algos.groups import group_stats

Scores = torch.Tensor | np.ndarray | Sequence[float]


def _as_1d_float64(values: Scores, name: str) -> torch.Tensor:
    """Per-sample values as a 1-D float64 CPU tensor; ``name`` labels errors."""
    tensor = values.detach().cpu() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.dim() != 1:
        raise ValueError(f"scores[{name!r}] must be 1-D (one value per sample), got shape {tuple(tensor.shape)}")
    return tensor.to(torch.float64)


def online_filter_mask(
    scores: Mapping[str, Scores],
    index: np.ndarray | Sequence[Hashable],
    filter_key: str = "overall",
    filter_low: float = 0.01,
    filter_high: float = 0.99,
) -> np.ndarray:
    """Keep the groups whose mean ``scores[filter_key]`` lies strictly inside ``(filter_low, filter_high)``.

    With accuracy-like scores in [0, 1] and the defaults, all-correct and all-wrong groups are dropped.
    """
    if filter_key not in scores:
        raise ValueError(f"algorithm.filter_key {filter_key!r} is not a reward metric; available: {sorted(scores)}")
    if not filter_low < filter_high:
        raise ValueError(f"algorithm.filter_low ({filter_low}) must be below algorithm.filter_high ({filter_high})")
    group_mean = group_stats(_as_1d_float64(scores[filter_key], filter_key), index).mean
    return ((group_mean > filter_low) & (group_mean < filter_high)).numpy()


def nonzero_std_mask(values: Scores, index: np.ndarray | Sequence[Hashable]) -> np.ndarray:
    """Keep the groups whose ``values`` are not all equal (nonzero std), as DAPO's dynamic sampling does.

    Singleton groups have no spread and are dropped (verl's DAPO recipe keeps them; here they would get
    advantage 0 anyway).
    """
    return (~group_stats(_as_1d_float64(values, "values"), index).constant).numpy()
