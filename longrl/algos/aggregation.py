"""Reduce a per-token loss matrix to a scalar, in the modes verl/EasyR1 name ``loss_agg_mode``.

The mode decides how much each response weighs: ``token-mean`` weighs every token equally (DAPO's
token-level loss, so long responses are not diluted); ``seq-mean-token-mean`` weighs every response equally
(original GRPO); ``seq-mean-token-sum`` sums a response's tokens and then averages responses. Responses with
no valid token are left out of the sequence means rather than counted as zero-loss responses.
"""

from __future__ import annotations

import torch

from longrl.algos.masked import masked_count, masked_mean, masked_sum

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def check_loss_agg_mode(loss_agg_mode: str) -> None:
    """Raise a ValueError naming the valid modes when ``loss_agg_mode`` is not one of them."""
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; valid: {list(LOSS_AGG_MODES)}")


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """Aggregate ``loss_mat (B, T)`` over the valid positions of ``loss_mask (B, T)`` per ``loss_agg_mode``."""
    check_loss_agg_mode(loss_agg_mode)
    if loss_agg_mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    token_sums = masked_sum(loss_mat, loss_mask, dim=-1)
    token_counts = masked_count(loss_mask, dim=-1)
    if loss_agg_mode == "seq-mean-token-mean":
        seq_losses = token_sums / token_counts.clamp(min=1).to(loss_mat.dtype)
    else:
        seq_losses = token_sums
    return masked_mean(seq_losses, token_counts > 0)
