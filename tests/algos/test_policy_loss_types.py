"""EasyR1's policy-loss variants against hand computations on a small batch: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from longrl.algos.policy_loss import compute_policy_loss

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -9.0]])
NEW = torch.tensor([[-0.8, -2.5, -0.4], [-1.0, -0.3, 5.0]])  # row 1, token 2 is padding (garbage values)
ADV = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def _loss(loss_type: str, **kwargs):
    new = NEW.clone().requires_grad_(True)
    loss, metrics = compute_policy_loss(OLD, new, ADV, MASK, clip_ratio_low=0.2, clip_ratio_high=0.28,
                                        clip_ratio_dual=3.0, loss_agg_mode="token-mean", loss_type=loss_type, **kwargs)
    loss.backward()
    return loss.item(), new.grad, metrics


def _clipped_ppo_token(ratio: float, adv: float) -> float:
    loss = max(-adv * ratio, -adv * min(max(ratio, 0.8), 1.28))
    return min(loss, -adv * 3.0) if adv < 0 else loss


def test_gspo_uses_one_clipped_ratio_per_sequence():
    seq0 = math.exp((0.2 - 0.5 + 0.1) / 3)  # mean log ratio of row 0
    seq1 = math.exp((0.5 + 0.0) / 2)
    expected = (3 * _clipped_ppo_token(seq0, 1.0) + 2 * _clipped_ppo_token(seq1, -2.0)) / 5
    loss, grad, _ = _loss("gspo")
    assert loss == pytest.approx(expected, rel=1e-6)
    # Row 0's ratio is inside the clip range: 3 terms -A * s over 5 tokens, ds/dlogp_t = s / 3.
    assert grad[0].tolist() == pytest.approx([-seq0 / 5] * 3, rel=1e-5)
    # Row 1 (A = -2): s = exp(0.25) > 1.28, but for a negative advantage the unclipped term is the larger, so it is
    # active: 2 terms 2 * s over 5 tokens, ds/dlogp_t = s / 2; the padding token gets nothing.
    assert grad[1].tolist() == pytest.approx([2 * seq1 / 5, 2 * seq1 / 5, 0.0], rel=1e-5)


def test_gspo_token_has_the_sequence_ratio_and_per_token_gradients():
    seq0 = math.exp((0.2 - 0.5 + 0.1) / 3)
    loss_token, grad, _ = _loss("gspo_token")
    loss_seq, _, _ = _loss("gspo")
    assert loss_token == pytest.approx(loss_seq, rel=1e-6)
    # d/dlogp_t of -A * sg(s) * exp(logp_t - sg(logp_t)) = -A * s, per token, over 5 valid tokens.
    assert grad[0].tolist() == pytest.approx([-seq0 / 5] * 3, rel=1e-5)


def test_cispo_weights_log_probs_by_the_detached_clipped_ratio():
    ratios = (NEW - OLD).exp()
    clipped = ratios.clamp(0.8, 1.28)
    expected = (-(ADV * NEW * clipped) * MASK).sum() / MASK.sum()
    loss, grad, metrics = _loss("cispo")
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(grad, -(ADV * clipped) * MASK / MASK.sum())  # the ratio is a weight, not a path
    # exp(-0.5) < 0.8 and exp(0.5) > 1.28 are clipped; exp(0.2), exp(0.1), exp(0) are not.
    assert metrics["pg_clipfrac"].item() == pytest.approx(2 / 5)


def test_sapo_gates_softly_with_a_temperature_per_advantage_sign():
    ratios = (NEW - OLD).exp()
    tau = torch.where(ADV >= 0, torch.tensor(1.0), torch.tensor(1.05))
    per_token = -ADV * 4.0 / tau * torch.sigmoid(tau * (ratios - 1.0))
    expected = (per_token * MASK).sum() / MASK.sum()
    loss, grad, _ = _loss("sapo", tau_positive=1.0, tau_negative=1.05)
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    gate_slope = 4.0 * torch.sigmoid(tau * (ratios - 1)) * (1 - torch.sigmoid(tau * (ratios - 1)))
    assert torch.allclose(grad, -ADV * gate_slope * ratios * MASK / MASK.sum(), atol=1e-6)


def test_default_is_unchanged_and_an_unknown_type_is_refused():
    ratios = (NEW - OLD).exp()
    tokens = [_clipped_ppo_token(ratios[i, j].item(), ADV[i, j].item()) for i, j in [(0, 0), (0, 1), (0, 2), (1, 0),
                                                                                  (1, 1)]]
    assert _loss("default")[0] == pytest.approx(sum(tokens) / 5, rel=1e-6)
    with pytest.raises(ValueError, match="loss_type must be one of"):
        _loss("ppo2")
