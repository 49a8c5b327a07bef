"""PPO-clip policy loss with clip-higher (DAPO) and dual-clip.

``ratio = exp(log_probs - old_log_probs)`` is clipped to ``[1 - clip_ratio_low, 1 + clip_ratio_high]``;
a larger upper bound (clip-higher) lets low-probability tokens with positive advantage grow, which keeps
entropy from collapsing. Dual-clip bounds the loss of negative-advantage tokens at ``-A * clip_ratio_dual``
so a huge ratio on a bad token cannot blow up the update.
"""

from __future__ import annotations

import torch

from longrl.algos.aggregation import agg_loss, check_loss_agg_mode
from longrl.algos.masked import masked_mean

# exp(20) ~ 5e8: beyond this the ratio is clipped anyway, and exp would overflow in low precision.
_LOG_RATIO_BOUND = 20.0


def compute_policy_loss(
    old_log_probs: torch.Tensor,
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_dual: float | None = 3.0,
    loss_agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip loss over ``(B, T)`` per-token tensors; returns ``(loss, metrics)``.

    ``clip_ratio_dual=None`` turns dual-clip off. Metrics are detached scalar tensors (no host sync here):
    ``pg_clipfrac`` (share of valid tokens where the clipped branch is the active one), ``pg_clipfrac_lower``
    (share where dual-clip bounds a negative-advantage token) and ``ppo_kl`` (mean of old - new log-prob).
    """
    check_loss_agg_mode(loss_agg_mode)
    if not 0.0 <= clip_ratio_low < 1.0 or clip_ratio_high < 0.0:
        raise ValueError(
            f"need 0 <= clip_ratio_low < 1 and clip_ratio_high >= 0, got {clip_ratio_low} and {clip_ratio_high}"
        )
    if clip_ratio_dual is not None and clip_ratio_dual <= 1.0:
        raise ValueError(f"clip_ratio_dual must be > 1 (or None to disable dual-clip), got {clip_ratio_dual}")

    log_ratio = torch.clamp(log_probs - old_log_probs, -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    pg_losses = torch.maximum(unclipped, clipped)
    metrics = {
        "pg_clipfrac": masked_mean((clipped > unclipped).float(), response_mask),
        "ppo_kl": masked_mean(-log_ratio, response_mask),
    }
    if clip_ratio_dual is None:
        metrics["pg_clipfrac_lower"] = torch.zeros((), device=pg_losses.device)
    else:
        dual_bound = -advantages * clip_ratio_dual
        dual_active = (advantages < 0) & (pg_losses > dual_bound)
        pg_losses = torch.where(advantages < 0, torch.minimum(pg_losses, dual_bound), pg_losses)
        metrics["pg_clipfrac_lower"] = masked_mean(dual_active.float(), response_mask)
    loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
    return loss, {name: value.detach() for name, value in metrics.items()}
