"""DAPO overlong ramp at its edges, and entropy from logits."""

import math

import pytest
import torch

from longrl.algos.entropy import entropy_from_logits, masked_entropy_mean
from longrl.algos.overlong import overlong_penalty


def test_overlong_ramp_edges():
    # max 20, buffer 4: free up to 16 tokens, -1 at 20, clamped beyond
    lengths = torch.tensor([0, 16, 17, 18, 19, 20, 25])
    penalty = overlong_penalty(lengths, max_response_length=20, overlong_buffer_len=4, penalty_factor=1.0)
    assert penalty.tolist() == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0]
    half = overlong_penalty(lengths, 20, 4, 0.5)
    assert half.tolist() == [0.0, 0.0, -0.125, -0.25, -0.375, -0.5, -0.5]


def test_overlong_invalid_settings():
    with pytest.raises(ValueError, match="overlong_buffer_len"):
        overlong_penalty(torch.tensor([1]), 20, 0, 1.0)
    with pytest.raises(ValueError, match="overlong_buffer_len"):
        overlong_penalty(torch.tensor([1]), 20, 21, 1.0)
    with pytest.raises(ValueError, match="overlong_penalty_factor"):
        overlong_penalty(torch.tensor([1]), 20, 4, -1.0)


def test_uniform_entropy_is_log_vocab():
    logits = torch.full((2, 3, 7), 4.2)
    torch.testing.assert_close(entropy_from_logits(logits), torch.full((2, 3), math.log(7)))


def test_two_class_entropy_and_extreme_logits():
    # softmax(0, ln 3) = (1/4, 3/4)
    two = entropy_from_logits(torch.tensor([0.0, math.log(3.0)], dtype=torch.float64))
    assert two.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # probabilities underflow to 0: finite, and essentially 0
    peaked = entropy_from_logits(torch.tensor([1000.0, 0.0, -1000.0]))
    assert torch.isfinite(peaked) and abs(peaked.item()) < 1e-6


def test_masked_entropy_mean_ignores_padding():
    logits = torch.zeros(2, 2, 4)  # every position uniform over 4: log 4
    logits[0, 1] = torch.tensor([50.0, 0.0, 0.0, 0.0])  # near one-hot, entropy ~0
    logits[1, 1] = float("nan")  # padding garbage
    mask = torch.tensor([[1, 1], [1, 0]])
    assert masked_entropy_mean(logits, mask).item() == pytest.approx(2 * math.log(4) / 3, abs=1e-6)
