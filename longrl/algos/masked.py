"""Mask-aware reductions over padded token tensors.

Every RL quantity lives on a padded ``(B, T)`` grid where only ``response_mask`` positions are real tokens.
These reductions read only the valid positions (padding may hold garbage, even NaN, without leaking in) and
never divide by zero: an empty mask yields 0, so an all-padding micro-batch contributes nothing instead of NaN.
A mask is read as boolean (nonzero = valid).
"""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` over positions where ``mask`` is nonzero, over ``dim`` (all dims when None)."""
    kept = torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_count(mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Number of valid positions over ``dim`` (all dims when None), as an integer tensor."""
    valid = mask.bool()
    return valid.sum() if dim is None else valid.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of the valid ``values`` over ``dim``; 0 where no position is valid."""
    count = masked_count(mask, dim).clamp(min=1).to(values.dtype)
    return masked_sum(values, mask, dim) / count


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of all valid ``values`` (Bessel-corrected when ``unbiased``); 0 with fewer than two values.

    Fewer than two values carry no spread, so 0 is returned rather than raising (verl raises), which keeps
    a tiny last micro-batch from aborting a step.
    """
    mean = masked_mean(values, mask)
    sq_dev = masked_sum((values - mean) ** 2, mask)
    count = masked_count(mask)
    denom = (count - 1) if unbiased else count
    return sq_dev / denom.clamp(min=1).to(values.dtype)


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise valid ``values`` to zero mean and unit (unbiased) variance over the whole tensor.

    With ``shift_mean=False`` the original mean is added back (only the scale changes). When all valid
    values are equal the centred values are exactly 0 (not rounding noise amplified by ``1/sqrt(eps)``).
    Positions outside the mask are 0.
    """
    valid = mask.bool()
    mean = masked_mean(values, mask)
    var = masked_var(values, mask, unbiased=True)
    big = torch.finfo(values.dtype).max
    constant = values.masked_fill(~valid, -big).amax() == values.masked_fill(~valid, big).amin()
    centred = torch.where(constant, torch.zeros_like(values), values - mean)
    whitened = centred * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(valid, whitened, torch.zeros_like(whitened))
