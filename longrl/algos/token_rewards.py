"""Turn one scalar score per response into token-level rewards.

Outcome rewards judge a whole response, yet every estimator consumes a ``(B, T)`` reward grid; by convention
(EasyR1/verl) the score sits on the last valid response token and every other token gets 0, so discounted
returns credit the whole response and sums over tokens recover the score.
"""

from __future__ import annotations

import torch


def scores_to_token_level_rewards(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Place ``scores[i]`` on the last position where ``response_mask[i]`` is nonzero; 0 elsewhere.

    The last valid position is found from the mask itself, so right padding is not assumed. A response with
    no valid token would silently lose its score, so it is an error naming the rows.
    """
    if scores.dim() != 1 or response_mask.dim() != 2 or scores.shape[0] != response_mask.shape[0]:
        raise ValueError(
            f"expected scores (B,) and response_mask (B, T); got {tuple(scores.shape)} and "
            f"{tuple(response_mask.shape)}"
        )
    valid = response_mask.bool()
    empty = (~valid.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty} have an empty response_mask, so their score has no token to sit on")
    positions = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    last = torch.where(valid, positions, -1).amax(dim=-1)
    rewards = torch.zeros(valid.shape, dtype=scores.dtype, device=scores.device)
    rewards[torch.arange(valid.shape[0], device=valid.device), last] = scores
    return rewards
