"""Per-group statistics over samples that share a prompt uid.

Group-relative estimators (GRPO, RLOO, REINFORCE++-baseline) and the DAPO filters compare each rollout with
the other rollouts of the same prompt. After batch balancing the ``n`` rollouts of a prompt are not
contiguous, so groups are found from the uid array ``index`` alone, never from positions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GroupStats:
    """Each sample's view of its own group; every field is shaped ``(B,)``.

    ``std`` is Bessel-corrected (as ``torch.std``) and 0 for singleton groups. ``constant`` is True when all
    members hold exactly the same value; it is computed by comparison, not from ``std``, so rounding in the
    mean can never make an all-equal group look informative.
    """

    size: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    constant: torch.Tensor


def group_ids(
    index: np.ndarray | torch.Tensor | Sequence[Hashable], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, int]:
    """Dense group numbers ``0..G-1`` (first-appearance order) for uids ``index``, and ``G``.

    Any hashable uid works (str, int, uuid); no sorting is needed, so mixed types are fine. A tensor of ids
    is read by value (its elements would otherwise hash by identity, making every sample its own group).
    """
    uids = index.tolist() if isinstance(index, torch.Tensor) else np.asarray(index, dtype=object).tolist()
    numbering: dict[Hashable, int] = {}
    ids = [numbering.setdefault(uid, len(numbering)) for uid in uids]
    return torch.tensor(ids, dtype=torch.long, device=device), len(numbering)


def group_stats(values: torch.Tensor, index: np.ndarray | Sequence[Hashable]) -> GroupStats:
    """Group size, mean, std and constancy of 1-D ``values`` grouped by ``index``, gathered back per sample.

    Statistics are computed in float64 (they are over ``B`` scalars, so this is free) and returned as float64.
    """
    if values.dim() != 1:
        raise ValueError(f"group_stats expects 1-D per-sample values, got shape {tuple(values.shape)}")
    if len(index) != values.shape[0]:
        raise ValueError(
            f"index has {len(index)} uids but there are {values.shape[0]} samples; pass one uid per sample"
        )
    ids, num_groups = group_ids(index, device=values.device)
    vals = values.detach().to(torch.float64)
    size = torch.zeros(num_groups, dtype=torch.float64, device=vals.device).index_add_(0, ids, torch.ones_like(vals))
    total = torch.zeros_like(size).index_add_(0, ids, vals)
    mean = total / size
    sq_dev = torch.zeros_like(size).index_add_(0, ids, (vals - mean[ids]) ** 2)
    std = torch.sqrt(sq_dev / (size - 1).clamp(min=1))
    high = torch.empty_like(size).scatter_reduce_(0, ids, vals, reduce="amax", include_self=False)
    low = torch.empty_like(size).scatter_reduce_(0, ids, vals, reduce="amin", include_self=False)
    return GroupStats(size=size[ids], mean=mean[ids], std=std[ids], constant=(high == low)[ids])
