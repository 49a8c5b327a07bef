"""Policy losses over per-token log-probs: PPO-clip with clip-higher (DAPO) and dual-clip, and the variants EasyR1
ships (``loss_type``).

* ``default`` -- ``ratio = exp(log_probs - old_log_probs)`` clipped to ``[1 - clip_ratio_low, 1 + clip_ratio_high]``;
  a larger upper bound (clip-higher) lets low-probability tokens with positive advantage grow, which keeps entropy
  from collapsing. Dual-clip bounds the loss of negative-advantage tokens at ``-A * clip_ratio_dual`` so a huge ratio
  on a bad token cannot blow up the update.
* ``gspo`` -- the same clipped objective on one importance ratio per sequence, ``exp(mean_t log ratio)`` (GSPO);
  ``gspo_token`` keeps that ratio's value but lets each token's gradient through its own log-prob.
* ``cispo`` -- ``-A * log_prob * stopgrad(clipped ratio)``: the ratio weights the token but is never a reason to drop
  its gradient (CISPO).
* ``sapo`` -- a soft gate ``4 / tau * sigmoid(tau * (ratio - 1))`` in place of the hard clip, with its own
  temperature for positive and negative advantages (SAPO).
"""

from __future__ import annotations

import torch

from longrl.algos.aggregation import agg_loss, check_loss_agg_mode
from longrl.algos.masked import masked_mean

# exp(20) ~ 5e8: beyond this the ratio is clipped anyway, and exp would overflow in low precision.
_LOG_RATIO_BOUND = 20.0
POLICY_LOSS_TYPES = ("default", "gspo", "gspo_token", "cispo", "sapo")


def _log_ratio(log_probs: torch.Tensor, old_log_probs: torch.Tensor, response_mask: torch.Tensor,
               loss_type: str) -> torch.Tensor:
    """Per-token log importance ratio; for the GSPO types the sequence's mean, broadcast over its tokens."""
    token = log_probs - old_log_probs
    if loss_type not in ("gspo", "gspo_token"):
        return token
    sequence = masked_mean(token, response_mask, dim=-1).unsqueeze(-1)
    if loss_type == "gspo_token":
        return sequence.detach() + log_probs - log_probs.detach()
    return sequence.expand_as(token)


def compute_policy_loss(
    old_log_probs: torch.Tensor,
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_dual: float | None = 3.0,
    loss_agg_mode: str = "token-mean",
    loss_type: str = "default",
    tau_positive: float = 1.0,
    tau_negative: float = 1.05,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ``loss_type`` policy loss (module docstring) over ``(B, T)`` per-token tensors; returns ``(loss, metrics)``.

    ``clip_ratio_dual=None`` turns dual-clip off (``default`` and the GSPO types). Metrics are detached scalar
    tensors (no host sync here): ``pg_clipfrac`` (share of valid tokens whose ratio the clip bounds),
    ``pg_clipfrac_lower`` (share where dual-clip bounds a negative-advantage token) and ``ppo_kl`` (mean of
    old - new log-prob).
    """
    check_loss_agg_mode(loss_agg_mode)
    if loss_type not in POLICY_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {POLICY_LOSS_TYPES}, got {loss_type!r}")
    if not 0.0 <= clip_ratio_low < 1.0 or clip_ratio_high < 0.0:
        raise ValueError(
            f"need 0 <= clip_ratio_low < 1 and clip_ratio_high >= 0, got {clip_ratio_low} and {clip_ratio_high}"
        )
    if clip_ratio_dual is not None and clip_ratio_dual <= 1.0:
        raise ValueError(f"clip_ratio_dual must be > 1 (or None to disable dual-clip), got {clip_ratio_dual}")

    log_ratio = torch.clamp(_log_ratio(log_probs, old_log_probs, response_mask, loss_type),
                            -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    metrics = {"ppo_kl": masked_mean(old_log_probs - log_probs, response_mask)}
    if loss_type in ("cispo", "sapo"):
        metrics["pg_clipfrac"] = masked_mean((clipped_ratio != ratio).float(), response_mask)
        metrics["pg_clipfrac_lower"] = torch.zeros((), device=ratio.device)
        if loss_type == "cispo":
            pg_losses = -advantages * log_probs * clipped_ratio.detach()
        else:
            tau = torch.where(advantages >= 0, torch.full_like(ratio, tau_positive), torch.full_like(ratio, tau_negative))
            pg_losses = -advantages * 4.0 / tau * torch.sigmoid(tau * (ratio - 1.0))
        loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
        return loss, {name: value.detach() for name, value in metrics.items()}
    unclipped = -advantages * ratio
    clipped = -advantages * clipped_ratio
    pg_losses = torch.maximum(unclipped, clipped)
    metrics["pg_clipfrac"] = masked_mean((clipped > unclipped).float(), response_mask)
    if clip_ratio_dual is None:
        metrics["pg_clipfrac_lower"] = torch.zeros((), device=pg_losses.device)
    else:
        dual_bound = -advantages * clip_ratio_dual
        dual_active = (advantages < 0) & (pg_losses > dual_bound)
        pg_losses = torch.where(advantages < 0, torch.minimum(pg_losses, dual_bound), pg_losses)
        metrics["pg_clipfrac_lower"] = masked_mean(dual_active.float(), response_mask)
    loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
    return loss, {name: value.detach() for name, value in metrics.items()}
