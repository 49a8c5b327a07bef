"""Steps 5-6 of DESIGN.md on the driver: KL as a reward penalty (when configured) and the advantage estimate.

Estimators take different options (group ids, ``gamma``, std normalisation); each gets the ones its signature
names, so adding an estimator to ``algos.advantages`` needs no change here.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from longrl.algos import apply_kl_penalty, get_advantage_estimator, scores_to_token_level_rewards
from longrl.algos.kl import KLController
from longrl.config.schema import RootConfig
from longrl.protocol import (
    ADVANTAGES,
    OLD_LOG_PROBS,
    REF_LOG_PROBS,
    RESPONSE_MASK,
    RETURNS,
    TOKEN_LEVEL_REWARDS,
    TOKEN_LEVEL_SCORES,
    UID,
    Batch,
)


def compute_advantages(batch: Batch, scores: torch.Tensor, cfg: RootConfig,
                       kl_ctrl: KLController | None) -> tuple[Batch, dict[str, float]]:
    """``batch`` with ``token_level_scores``, ``token_level_rewards``, ``advantages`` and ``returns`` added."""
    algo = cfg.algorithm
    mask = batch.tensors[RESPONSE_MASK]
    token_scores = scores_to_token_level_rewards(scores, mask)
    metrics: dict[str, float] = {}
    if kl_ctrl is not None:
        penalty = apply_kl_penalty(token_scores, batch.tensors[OLD_LOG_PROBS], batch.tensors[REF_LOG_PROBS], mask,
                                   kl_ctrl, algo.kl_penalty)
        token_rewards = penalty.token_level_rewards
        metrics = {"critic/kl": float(penalty.reward_kl_penalty), "critic/kl_coef": float(penalty.reward_kl_penalty_coeff)}
    else:
        token_rewards = token_scores
    estimator = get_advantage_estimator(algo.adv_estimator)
    options = {"index": np.asarray(batch.non_tensors[UID]), "gamma": algo.gamma,
               "norm_adv_by_std_in_grpo": algo.norm_adv_by_std_in_grpo}
    accepted = inspect.signature(estimator).parameters
    advantages, returns = estimator(token_rewards, mask, **{k: v for k, v in options.items() if k in accepted})
    added = Batch.from_dict({TOKEN_LEVEL_SCORES: token_scores, TOKEN_LEVEL_REWARDS: token_rewards,
                             ADVANTAGES: advantages, RETURNS: returns})
    return batch.union(added), metrics
