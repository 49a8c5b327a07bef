"""DAPO soft overlong punishment: a length penalty that ramps in over the last tokens of the budget.

Truncated responses get no reward signal about *why* they failed; a soft ramp tells the policy to finish
earlier without punishing responses that are long but within budget. The penalty is 0 up to
``max_response_length - overlong_buffer_len`` tokens, falls linearly to ``-penalty_factor`` at
``max_response_length``, and stays at ``-penalty_factor`` beyond.
"""

from __future__ import annotations

import torch


def overlong_penalty(
    response_lengths: torch.Tensor, max_response_length: int, overlong_buffer_len: int, penalty_factor: float
) -> torch.Tensor:
    """Penalty (<= 0, float) for each response length, to be added to the score."""
    if not 0 < overlong_buffer_len <= max_response_length:
        raise ValueError(
            f"algorithm.overlong_buffer_len must be in (0, max_response_length={max_response_length}], "
            f"got {overlong_buffer_len}"
        )
    if penalty_factor < 0:
        raise ValueError(f"algorithm.overlong_penalty_factor must be >= 0, got {penalty_factor}")
    expected_length = max_response_length - overlong_buffer_len
    excess = response_lengths.to(torch.float32) - expected_length
    return torch.clamp(-excess / overlong_buffer_len * penalty_factor, min=-penalty_factor, max=0.0)
