"""KL estimators, KL loss, KL reward penalty and the fixed/adaptive controllers, against hand numbers."""

import math

import pytest
import torch

from longrl.algos.kl import (
    AdaptiveKLController,
    FixedKLController,
    apply_kl_penalty,
    compute_kl,
    compute_kl_loss,
    get_kl_controller,
)

LN2 = math.log(2.0)
# policy probabilities 0.5, 0.2 against reference 0.25, 0.4: log-ratios ln 2 and -ln 2
LOG_PROBS = torch.tensor([[math.log(0.5), math.log(0.2)]], dtype=torch.float64)
REF_LOG_PROBS = torch.tensor([[math.log(0.25), math.log(0.4)]], dtype=torch.float64)


@pytest.mark.parametrize(
    "names,expected",
    [
        (("k1", "kl"), [LN2, -LN2]),
        (("abs",), [LN2, LN2]),
        (("k2", "mse"), [0.5 * LN2**2, 0.5 * LN2**2]),
        # exp(-d) + d - 1: 0.5 + ln2 - 1 and 2 - ln2 - 1
        (("k3", "low_var_kl"), [LN2 - 0.5, 1.0 - LN2]),
    ],
)
def test_estimators_and_aliases(names, expected):
    for name in names:
        kl = compute_kl(LOG_PROBS, REF_LOG_PROBS, name)
        torch.testing.assert_close(kl, torch.tensor([expected], dtype=torch.float64))


def test_k3_is_clamped_to_ten():
    log_probs = torch.tensor([30.0, -30.0, 0.0])
    kl = compute_kl(log_probs, torch.zeros(3), "low_var_kl")
    assert kl.tolist() == [10.0, 10.0, 0.0]


def test_unknown_estimator_lists_names():
    with pytest.raises(ValueError, match=r"'full'.*\['abs', 'k1', 'k2', 'k3', 'kl', 'low_var_kl', 'mse'\]"):
        compute_kl(LOG_PROBS, REF_LOG_PROBS, "full")


def test_kl_loss_aggregates_over_valid_tokens():
    log_probs = torch.tensor([[LN2, -LN2, 5.0], [LN2, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # k1 valid values ln2, -ln2, ln2
    assert compute_kl_loss(log_probs, torch.zeros(2, 3), mask, "k1").item() == pytest.approx(LN2 / 3)
    seq = compute_kl_loss(log_probs, torch.zeros(2, 3), mask, "k1", "seq-mean-token-mean")
    assert seq.item() == pytest.approx((0.0 + LN2) / 2)


def test_fixed_penalty_on_rewards_and_metrics():
    scores = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    old_log_probs = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.6, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    result = apply_kl_penalty(scores, old_log_probs, torch.zeros(2, 3), mask, FixedKLController(0.5), "kl")
    expected = torch.tensor([[-0.05, -0.1, 0.85], [-0.2, 1.7, 0.0]])
    torch.testing.assert_close(result.token_level_rewards, expected)
    # per-response mean KL 0.2 and 0.5, averaged over responses
    assert result.reward_kl_penalty == pytest.approx(0.35)
    assert result.reward_kl_penalty_coeff == 0.5


def test_adaptive_controller_steps():
    ctrl = AdaptiveKLController(init_kl_coef=0.2, target_kl=0.1, horizon=100)
    ctrl.update(current_kl=0.11, n_steps=100)  # error +0.1 -> x1.1
    assert ctrl.value == pytest.approx(0.22)
    ctrl.update(current_kl=1.0, n_steps=10)  # error clipped to +0.2 -> x1.02
    assert ctrl.value == pytest.approx(0.22 * 1.02)
    ctrl.update(current_kl=0.0, n_steps=50)  # error clipped to -0.2 -> x0.9
    assert ctrl.value == pytest.approx(0.22 * 1.02 * 0.9)


def test_penalty_uses_the_coefficient_before_the_update():
    ctrl = get_kl_controller("adaptive", kl_coef=0.2, kl_target=0.1, kl_horizon=10)
    scores = torch.zeros(2, 1)
    result = apply_kl_penalty(scores, torch.full((2, 1), 1.0), torch.zeros(2, 1), torch.ones(2, 1), ctrl, "k1")
    torch.testing.assert_close(result.token_level_rewards, torch.full((2, 1), -0.2))
    assert result.reward_kl_penalty_coeff == 0.2
    assert ctrl.value == pytest.approx(0.2 * (1 + 0.2 * 2 / 10))


def test_controller_factory():
    fixed = get_kl_controller("fixed", kl_coef=0.01)
    fixed.update(current_kl=5.0, n_steps=1000)
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.01
    with pytest.raises(ValueError, match="kl_type"):
        get_kl_controller("linear", kl_coef=0.01)
    with pytest.raises(ValueError, match="kl_target"):
        get_kl_controller("adaptive", kl_coef=0.01, kl_target=0.0)
