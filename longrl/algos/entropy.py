"""Token entropy of the policy from its logits, for the entropy bonus and for logging.

Computed as ``logsumexp(z) - sum(softmax(z) * z)``, which never takes the log of a probability, so it stays
finite where probabilities underflow to 0. Logits must be finite (model outputs are; ``-inf`` masking is not
supported because ``0 * -inf`` is NaN).
"""

from __future__ import annotations

import torch

from longrl.algos.masked import masked_mean


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the categorical over the last dim of ``logits``; shape ``logits.shape[:-1]``."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def masked_entropy_mean(logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy over the valid tokens of ``logits (B, T, V)`` under ``response_mask (B, T)``."""
    return masked_mean(entropy_from_logits(logits), response_mask)
