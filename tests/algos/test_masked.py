"""Mask-aware reductions against hand-computed numbers; padding holds NaN to prove it never leaks in."""

import math

import pytest
import torch

from longrl.algos.masked import masked_mean, masked_sum, masked_var, masked_whiten

NAN = float("nan")
VALUES = torch.tensor([[1.0, 2.0, 3.0, NAN], [4.0, 5.0, NAN, NAN]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_sum_and_mean_ignore_padding():
    assert masked_sum(VALUES, MASK).item() == 15.0
    assert masked_mean(VALUES, MASK).item() == 3.0
    assert masked_sum(VALUES, MASK, dim=-1).tolist() == [6.0, 9.0]
    assert masked_mean(VALUES, MASK, dim=-1).tolist() == [2.0, 4.5]


def test_mean_of_empty_mask_is_zero_not_nan():
    empty = torch.zeros_like(MASK)
    assert masked_mean(VALUES, empty).item() == 0.0
    rows = masked_mean(VALUES, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]), dim=-1)
    assert rows.tolist() == [1.0, 0.0]


def test_var_unbiased_and_biased():
    # values 1..5: mean 3, squared deviations sum to 10
    assert masked_var(VALUES, MASK).item() == pytest.approx(10 / 4)
    assert masked_var(VALUES, MASK, unbiased=False).item() == pytest.approx(10 / 5)


def test_var_with_one_value_is_zero():
    one = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]])
    assert masked_var(VALUES, one).item() == 0.0


def test_whiten_matches_hand_numbers_and_zeroes_padding():
    std = math.sqrt(2.5 + 1e-8)
    expected = torch.tensor([[-2 / std, -1 / std, 0.0, 0.0], [1 / std, 2 / std, 0.0, 0.0]])
    torch.testing.assert_close(masked_whiten(VALUES, MASK), expected)
    shifted = torch.tensor([[-2 / std + 3, -1 / std + 3, 3.0, 0.0], [1 / std + 3, 2 / std + 3, 0.0, 0.0]])
    torch.testing.assert_close(masked_whiten(VALUES, MASK, shift_mean=False), shifted)


def test_whiten_of_equal_values_is_exactly_zero():
    # 0.1 is not exact in binary: a naive (v - mean) / sqrt(eps) turns the rounding of the mean into noise
    values = torch.full((3, 7), 0.1)
    mask = torch.ones(3, 7)
    mask[1, 4:] = 0
    out = masked_whiten(values, mask)
    assert torch.equal(out, torch.zeros_like(out))
