"""PPO-clip loss: hand-computed losses per token, clip-higher asymmetry, dual-clip, aggregation, gradients."""

import math

import pytest
import torch

from longrl.algos.aggregation import agg_loss
from longrl.algos.policy_loss import compute_policy_loss

# row 0: four tokens; row 1: three tokens and one padding position holding garbage
RATIOS = torch.tensor([[1.1, 1.25, 1.5, 0.7], [0.9, 5.0, 0.5, 1e6]])
ADVANTAGES = torch.tensor([[1.0, 1.0, 1.0, -1.0], [-1.0, -2.0, 1.0, 50.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
# clip_ratio_low 0.2, clip_ratio_high 0.28, clip_ratio_dual 3:
#  1.1 (A=+1) inside -> -1.1;  1.25 (A=+1) inside thanks to clip-higher -> -1.25;  1.5 (A=+1) -> -1.28 clipped;
#  0.7 (A=-1) -> 0.8 clipped; 0.9 (A=-1) -> 0.9; 5.0 (A=-2) -> max(10, 2.56) = 10, dual-clipped to 6;
#  0.5 (A=+1) -> max(-0.5, -0.8) = -0.5 (pessimistic, not counted as clipped)
ROW0 = [-1.1, -1.25, -1.28, 0.8]
ROW1 = [0.9, 6.0, -0.5]


def _loss(mode="token-mean", **clip):
    old = torch.zeros_like(RATIOS)
    clip = {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_dual": 3.0, **clip}
    return compute_policy_loss(old, RATIOS.log(), ADVANTAGES, MASK, loss_agg_mode=mode, **clip)


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("token-mean", sum(ROW0 + ROW1) / 7),
        ("seq-mean-token-sum", (sum(ROW0) + sum(ROW1)) / 2),
        ("seq-mean-token-mean", (sum(ROW0) / 4 + sum(ROW1) / 3) / 2),
    ],
)
def test_loss_per_aggregation_mode(mode, expected):
    loss, _ = _loss(mode)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_metrics():
    _, metrics = _loss()
    assert metrics["pg_clipfrac"].item() == pytest.approx(2 / 7)
    assert metrics["pg_clipfrac_lower"].item() == pytest.approx(1 / 7)
    valid = [1.1, 1.25, 1.5, 0.7, 0.9, 5.0, 0.5]
    assert metrics["ppo_kl"].item() == pytest.approx(-sum(math.log(r) for r in valid) / 7, rel=1e-5)
    assert all(not value.requires_grad for value in metrics.values())


def test_clip_higher_is_asymmetric():
    symmetric, _ = _loss(clip_ratio_high=0.2)
    # only the ratio-1.25 token changes (-1.25 -> -1.2), and the ratio-1.5 token clips at 1.2 instead of 1.28
    expected = sum([-1.1, -1.2, -1.2, 0.8] + ROW1) / 7
    assert symmetric.item() == pytest.approx(expected, rel=1e-5)


def test_dual_clip_off_leaves_the_large_negative_loss():
    loss, metrics = _loss(clip_ratio_dual=None)
    assert loss.item() == pytest.approx(sum(ROW0 + [0.9, 10.0, -0.5]) / 7, rel=1e-5)
    assert metrics["pg_clipfrac_lower"].item() == 0.0


@pytest.mark.parametrize(
    "advantage,ratio,expected_grad",
    [
        (1.0, 1.0, -1.0),  # raising the log-prob of a good token lowers the loss
        (-1.0, 1.0, 1.0),  # and of a bad token raises it
        (2.0, 0.5, -1.0),  # -A * ratio, unclipped below 1 - low for A > 0
        (1.0, 1.5, 0.0),  # clipped above 1 + high: no gradient
        (-1.0, 5.0, 0.0),  # dual-clipped: no gradient
    ],
)
def test_gradient_sign(advantage, ratio, expected_grad):
    log_probs = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, _ = compute_policy_loss(
        torch.zeros(1, 1), log_probs, torch.tensor([[advantage]]), torch.ones(1, 1), 0.2, 0.28, 3.0
    )
    loss.backward()
    assert log_probs.grad.item() == pytest.approx(expected_grad, abs=1e-6)


def test_invalid_clip_settings_and_mode():
    with pytest.raises(ValueError, match="clip_ratio_dual"):
        _loss(clip_ratio_dual=1.0)
    with pytest.raises(ValueError, match="clip_ratio_low"):
        _loss(clip_ratio_low=1.0)
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        _loss("sequence-mean")


def test_agg_loss_skips_empty_rows_in_sequence_means():
    loss_mat = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert agg_loss(loss_mat, mask, "token-mean").item() == pytest.approx(6 / 3)
    assert agg_loss(loss_mat, mask, "seq-mean-token-sum").item() == pytest.approx((4 + 2) / 2)
    assert agg_loss(loss_mat, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 2) / 2)
    with pytest.raises(ValueError, match=r"\['token-mean', 'seq-mean-token-sum', 'seq-mean-token-mean'\]"):
        agg_loss(loss_mat, mask, "sum")
