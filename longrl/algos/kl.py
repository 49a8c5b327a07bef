"""KL between the policy and the frozen reference, per token, as a loss term or as a reward penalty.

Estimators of KL(pi || ref) from samples of pi, with ``d = log_probs - ref_log_probs`` (Schulman's k1/k2/k3):
``k1`` = d (unbiased, high variance, can be negative), ``abs`` = |d|, ``k2`` = d^2 / 2 (low variance,
biased), ``k3`` = exp(-d) + d - 1 (unbiased and non-negative; clamped to [-10, 10] as verl does, so one
wild token cannot dominate). verl/EasyR1 names are accepted as aliases: ``kl``, ``mse``, ``low_var_kl``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from longrl.algos.aggregation import agg_loss
from longrl.algos.masked import masked_mean

KL_ESTIMATORS = {"k1": "k1", "kl": "k1", "abs": "abs", "k2": "k2", "mse": "k2", "k3": "k3", "low_var_kl": "k3"}

_K3_BOUND = 10.0
_LOG_RATIO_BOUND = 20.0


def _k3(diff: torch.Tensor) -> torch.Tensor:
    ref_minus_pi = torch.clamp(-diff, -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    return torch.clamp(torch.exp(ref_minus_pi) - ref_minus_pi - 1.0, -_K3_BOUND, _K3_BOUND)


_KL_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": lambda diff: diff,
    "abs": torch.abs,
    "k2": lambda diff: 0.5 * diff.square(),
    "k3": _k3,
}


def compute_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kl_penalty: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate named by ``kl_penalty`` (``algorithm.kl_penalty``); same shape as the inputs."""
    try:
        estimator = KL_ESTIMATORS[kl_penalty]
    except KeyError:
        raise ValueError(
            f"unknown kl_penalty {kl_penalty!r} (algorithm.kl_penalty); valid: {sorted(KL_ESTIMATORS)}"
        ) from None
    return _KL_FUNCTIONS[estimator](log_probs - ref_log_probs)


def compute_kl_loss(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    kl_penalty: str = "low_var_kl",
    loss_agg_mode: str = "token-mean",
) -> torch.Tensor:
    """KL as a loss term (``use_kl_loss``): the per-token estimate aggregated like the policy loss."""
    return agg_loss(compute_kl(log_probs, ref_log_probs, kl_penalty), response_mask, loss_agg_mode)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt; present so both controllers are driven the same way."""


class AdaptiveKLController:
    """Adaptive coefficient of Ziegler et al. (2019): steer the measured KL towards ``target_kl``.

    Each update multiplies the coefficient by ``1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``,
    so it moves at most 20% per ``horizon`` samples.
    """

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: float) -> None:
        if target_kl <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs kl_target > 0 and kl_horizon > 0, got {target_kl} and {horizon}")
        self.value = init_kl_coef
        self.target = target_kl
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Scale the coefficient after ``n_steps`` samples whose mean KL was ``current_kl``."""
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon


KLController = FixedKLController | AdaptiveKLController


def get_kl_controller(
    kl_type: str, kl_coef: float, kl_target: float = 0.1, kl_horizon: float = 10000.0
) -> KLController:
    """The controller for ``algorithm.kl_type`` (``fixed`` or ``adaptive``)."""
    if kl_type == "fixed":
        return FixedKLController(kl_coef)
    if kl_type == "adaptive":
        return AdaptiveKLController(kl_coef, kl_target, kl_horizon)
    raise ValueError(f"unknown kl_type {kl_type!r} (algorithm.kl_type); valid: ['adaptive', 'fixed']")


@dataclass(frozen=True)
class KLPenaltyResult:
    """Rewards after the penalty, and what to log: the batch's mean KL and the coefficient that was used."""

    token_level_rewards: torch.Tensor
    reward_kl_penalty: float
    reward_kl_penalty_coeff: float


@torch.no_grad()
def apply_kl_penalty(
    token_level_scores: torch.Tensor,
    old_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    kl_ctrl: KLController,
    kl_penalty: str = "kl",
) -> KLPenaltyResult:
    """KL as a reward penalty: ``token_level_rewards = token_level_scores - kl_coef * kl`` on valid tokens.

    ``old_log_probs`` are the rollout policy's log-probs (the policy that produced the responses).

    The controller's current value is used, then the controller is updated with this batch's KL (mean over
    responses of each response's mean token KL) and its size, as in PPO/EasyR1.
    """
    kl = compute_kl(old_log_probs, ref_log_probs, kl_penalty)
    kl = torch.where(response_mask.bool(), kl, torch.zeros_like(kl))
    beta = kl_ctrl.value
    current_kl = masked_mean(kl, response_mask, dim=-1).mean().item()
    kl_ctrl.update(current_kl=current_kl, n_steps=token_level_scores.shape[0])
    return KLPenaltyResult(
        token_level_rewards=token_level_scores - beta * kl, reward_kl_penalty=current_kl, reward_kl_penalty_coeff=beta
    )
