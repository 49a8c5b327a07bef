"""Advantage estimators, policy losses, KL penalties and filters as pure tensor functions.

Names and semantics follow verl/EasyR1. Everything here is torch (and numpy for uid arrays) only: no
torch.distributed, no Ray, so it runs and is tested on a CPU. Each module has one job:
``masked`` (mask-aware reductions), ``groups`` (per-uid statistics), ``token_rewards`` (score -> last token),
``advantages`` (GRPO/RLOO/REINFORCE++ and the registry), ``filters`` (dynamic sampling), ``aggregation``
(``loss_agg_mode``), ``policy_loss`` (PPO-clip), ``kl`` (estimators, loss, reward penalty, controllers),
``overlong`` (DAPO length shaping), ``entropy``.
"""

from longrl.algos.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_grpo_outcome_advantage,
    compute_reinforce_plus_plus_baseline_outcome_advantage,
    compute_reinforce_plus_plus_outcome_advantage,
    compute_rloo_outcome_advantage,
    get_advantage_estimator,
)
from longrl.algos.aggregation import LOSS_AGG_MODES, agg_loss
from longrl.algos.entropy import entropy_from_logits, masked_entropy_mean
from longrl.algos.filters import nonzero_std_mask, online_filter_mask
from longrl.algos.groups import GroupStats, group_ids, group_stats
from longrl.algos.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    KLPenaltyResult,
    apply_kl_penalty,
    compute_kl,
    compute_kl_loss,
    get_kl_controller,
)
from longrl.algos.masked import masked_count, masked_mean, masked_sum, masked_var, masked_whiten
from longrl.algos.overlong import overlong_penalty
from longrl.algos.policy_loss import compute_policy_loss
from longrl.algos.token_rewards import scores_to_token_level_rewards

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_ESTIMATORS",
    "LOSS_AGG_MODES",
    "AdaptiveKLController",
    "FixedKLController",
    "GroupStats",
    "KLPenaltyResult",
    "agg_loss",
    "apply_kl_penalty",
    "compute_grpo_outcome_advantage",
    "compute_kl",
    "compute_kl_loss",
    "compute_policy_loss",
    "compute_reinforce_plus_plus_baseline_outcome_advantage",
    "compute_reinforce_plus_plus_outcome_advantage",
    "compute_rloo_outcome_advantage",
    "entropy_from_logits",
    "get_advantage_estimator",
    "get_kl_controller",
    "group_ids",
    "group_stats",
    "masked_count",
    "masked_entropy_mean",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "nonzero_std_mask",
    "online_filter_mask",
    "overlong_penalty",
    "scores_to_token_level_rewards",
]
