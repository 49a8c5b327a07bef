"""Outcome advantage estimators: GRPO, RLOO, REINFORCE++ and REINFORCE++-baseline.

Each takes token-level rewards ``(B, T)`` (usually a score on the last response token, see
``token_rewards``), the ``response_mask`` and, for the group-relative ones, ``index``: one prompt uid per
sample, groups not assumed contiguous. Each returns ``(advantages, returns)`` shaped ``(B, T)`` and zero
outside the mask, like verl/EasyR1.

Groups with no contrast get advantage exactly 0: when every rollout of a prompt scored the same there is
nothing to prefer, and a singleton group has nothing to compare with. (verl gives a singleton its raw score
under GRPO/RLOO; here it gets 0, consistently across the group-relative estimators.)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from longrl.algos.groups import group_stats
from longrl.algos.masked import masked_sum, masked_whiten

Index = np.ndarray | Sequence[Hashable]
AdvantageEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _broadcast_to_tokens(per_sample: torch.Tensor, response_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Repeat one value per sample over its valid tokens (0 on padding), in ``like``'s dtype."""
    per_sample = per_sample.to(like.dtype).unsqueeze(-1)
    return torch.where(response_mask.bool(), per_sample, torch.zeros((), dtype=like.dtype, device=like.device))


def _outcome_scores(token_level_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Each response's total reward over its valid tokens, shape ``(B,)``."""
    return masked_sum(token_level_rewards, response_mask, dim=-1)


@torch.no_grad()
def compute_grpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Index,
    eps: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO: ``(score - group mean) / (group std + eps)``, or without the division (Dr. GRPO style).

    The std is Bessel-corrected, as in verl/EasyR1. Returns the advantage twice (advantages, returns).
    """
    scores = _outcome_scores(token_level_rewards, response_mask)
    stats = group_stats(scores, index)
    advantage = scores.to(torch.float64) - stats.mean
    if norm_adv_by_std_in_grpo:
        advantage = advantage / (stats.std + eps)
    advantage = torch.where(stats.constant, torch.zeros_like(advantage), advantage)
    tokens = _broadcast_to_tokens(advantage, response_mask, token_level_rewards)
    return tokens, tokens


@torch.no_grad()
def compute_rloo_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Index
) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO: each score minus the mean of the *other* scores of its group.

    ``s_i - (sum - s_i)/(n - 1)`` equals ``n/(n-1) * (s_i - mean)``, which is what is computed.
    """
    scores = _outcome_scores(token_level_rewards, response_mask)
    stats = group_stats(scores, index)
    scale = stats.size / (stats.size - 1).clamp(min=1)
    advantage = scale * (scores.to(torch.float64) - stats.mean)
    advantage = torch.where(stats.constant, torch.zeros_like(advantage), advantage)
    tokens = _broadcast_to_tokens(advantage, response_mask, token_level_rewards)
    return tokens, tokens


@torch.no_grad()
def compute_reinforce_plus_plus_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted return-to-go per token, then whitening over all valid tokens of the batch.

    The running return is cut at invalid positions (as verl does), so rewards never flow across padding.
    Returns ``(whitened advantages, raw returns)``.
    """
    valid = response_mask.bool()
    rewards = torch.where(valid, token_level_rewards, torch.zeros_like(token_level_rewards))
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
        running = torch.where(valid[:, t], running, torch.zeros_like(running))
    returns = torch.where(valid, returns, torch.zeros_like(returns))
    return masked_whiten(returns, response_mask), returns


@torch.no_grad()
def compute_reinforce_plus_plus_baseline_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Index
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: score minus its group mean, spread over the tokens, then global whitening.

    Whitening is over valid tokens (as verl), so longer responses weigh more in the batch statistics, and a
    group whose centred score is 0 moves to ``-batch mean / batch std`` like every other token.
    """
    scores = _outcome_scores(token_level_rewards, response_mask)
    stats = group_stats(scores, index)
    centred = scores.to(torch.float64) - stats.mean
    centred = torch.where(stats.constant, torch.zeros_like(centred), centred)
    tokens = masked_whiten(_broadcast_to_tokens(centred, response_mask, token_level_rewards), response_mask)
    return tokens, tokens


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": compute_grpo_outcome_advantage,
    "rloo": compute_rloo_outcome_advantage,
    "reinforce_plus_plus": compute_reinforce_plus_plus_outcome_advantage,
    "reinforce_plus_plus_baseline": compute_reinforce_plus_plus_baseline_outcome_advantage,
}


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name`` (``algorithm.adv_estimator`` in the config).

    All take ``(token_level_rewards, response_mask, ...)``; the group-relative ones then ``index``, GRPO
    also ``eps`` and ``norm_adv_by_std_in_grpo``, REINFORCE++ ``gamma``.
    """
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown advantage estimator {name!r} (algorithm.adv_estimator); valid: {sorted(ADVANTAGE_ESTIMATORS)}"
        ) from None
