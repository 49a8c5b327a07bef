"""Outcome advantage estimators against plain-Python references and hand-computed numbers.

The batch has padding (with garbage rewards on it that must be ignored), non-contiguous groups, an
all-equal group whose value is not exact in binary (0.1), and a singleton group.
"""

import math
import statistics

import numpy as np
import pytest
import torch

from longrl.algos.advantages import (
    compute_grpo_outcome_advantage,
    compute_reinforce_plus_plus_baseline_outcome_advantage,
    compute_reinforce_plus_plus_outcome_advantage,
    compute_rloo_outcome_advantage,
    get_advantage_estimator,
)

INDEX = np.array(["p", "q", "p", "eq", "q", "p", "eq", "solo", "eq"])
SCORES = [1.0, 0.0, 0.0, 0.1, 1.0, 0.5, 0.1, 0.7, 0.1]
LENGTHS = [3, 1, 4, 2, 4, 2, 3, 1, 4]
T = 4


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Scores on the last valid token, garbage 9.0 on every padding position."""
    rewards = torch.full((len(SCORES), T), 9.0)
    mask = torch.zeros(len(SCORES), T, dtype=torch.long)
    for i, (score, length) in enumerate(zip(SCORES, LENGTHS)):
        rewards[i, :length] = 0.0
        rewards[i, length - 1] = score
        mask[i, :length] = 1
    return rewards, mask


def _members(i: int) -> list[float]:
    return [SCORES[j] for j in range(len(SCORES)) if INDEX[j] == INDEX[i]]


def _spread(per_sample: list[float]) -> torch.Tensor:
    """(B, T) with each sample's value on its valid tokens."""
    return torch.tensor([[v if t < n else 0.0 for t in range(T)] for v, n in zip(per_sample, LENGTHS)])


def _reference_grpo(norm: bool, eps: float = 1e-6) -> list[float]:
    out = []
    for i, score in enumerate(SCORES):
        members = _members(i)
        if len(set(members)) == 1:
            out.append(0.0)
            continue
        centred = score - statistics.mean(members)
        out.append(centred / (statistics.stdev(members) + eps) if norm else centred)
    return out


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_reference(norm):
    rewards, mask = _batch()
    adv, ret = compute_grpo_outcome_advantage(rewards, mask, INDEX, norm_adv_by_std_in_grpo=norm)
    torch.testing.assert_close(adv, _spread(_reference_grpo(norm)))
    assert torch.equal(adv, ret)


def test_grpo_hand_numbers_and_exact_zeros():
    rewards, mask = _batch()
    adv, _ = compute_grpo_outcome_advantage(rewards, mask, INDEX)
    # group q = {0, 1}: mean 0.5, stdev sqrt(0.5)
    assert adv[4, 0].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-6), abs=1e-6)
    assert adv[1, 0].item() == pytest.approx(-0.5 / (math.sqrt(0.5) + 1e-6), abs=1e-6)
    # all-equal group "eq" and singleton "solo": exactly 0, no NaN anywhere
    for i in (3, 6, 7, 8):
        assert torch.equal(adv[i], torch.zeros(T))
    assert not torch.isnan(adv).any()


def test_rloo_matches_leave_one_out_loop():
    rewards, mask = _batch()
    adv, ret = compute_rloo_outcome_advantage(rewards, mask, INDEX)
    expected = []
    for i, score in enumerate(SCORES):
        others = [SCORES[j] for j in range(len(SCORES)) if INDEX[j] == INDEX[i] and j != i]
        expected.append(score - statistics.mean(others) if others and len(set(_members(i))) > 1 else 0.0)
    torch.testing.assert_close(adv, _spread(expected))
    assert torch.equal(adv, ret)
    # group p = {1.0, 0.0, 0.5}: 1.0 - mean(0.0, 0.5) = 0.75
    assert adv[0, 0].item() == pytest.approx(0.75)
    for i in (3, 6, 7, 8):
        assert torch.equal(adv[i], torch.zeros(T))


def test_reinforce_plus_plus_hand_numbers():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 7.0]])  # 7.0 is padding garbage
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = compute_reinforce_plus_plus_outcome_advantage(rewards, mask, gamma=0.5)
    assert torch.equal(ret, torch.tensor([[0.25, 0.5, 1.0], [1.0, 2.0, 0.0]]))
    # valid returns 0.25, 0.5, 1, 1, 2: mean 0.95, squared deviations sum to 1.8, unbiased var 0.45
    std = math.sqrt(0.45 + 1e-8)
    expected = torch.tensor([[-0.7, -0.45, 0.05], [0.05, 1.05, 0.0]]) / std
    torch.testing.assert_close(adv, expected)


def test_reinforce_plus_plus_return_does_not_cross_a_mask_gap():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    mask = torch.tensor([[1, 0, 1]])
    _, ret = compute_reinforce_plus_plus_outcome_advantage(rewards, mask, gamma=1.0)
    assert torch.equal(ret, torch.tensor([[0.0, 0.0, 1.0]]))


def test_reinforce_plus_plus_baseline_matches_reference():
    rewards, mask = _batch()
    adv, ret = compute_reinforce_plus_plus_baseline_outcome_advantage(rewards, mask, INDEX)
    centred = [0.0 if len(set(_members(i))) == 1 else s - statistics.mean(_members(i)) for i, s in enumerate(SCORES)]
    tokens = [c for c, n in zip(centred, LENGTHS) for _ in range(n)]
    mean = statistics.mean(tokens)
    std = math.sqrt(statistics.variance(tokens) + 1e-8)
    torch.testing.assert_close(adv, _spread([(c - mean) / std for c in centred]))
    assert torch.equal(adv, ret)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("grpo", compute_grpo_outcome_advantage),
        ("rloo", compute_rloo_outcome_advantage),
        ("reinforce_plus_plus", compute_reinforce_plus_plus_outcome_advantage),
        ("reinforce_plus_plus_baseline", compute_reinforce_plus_plus_baseline_outcome_advantage),
    ],
)
def test_registry_and_zero_outside_mask(name, fn):
    assert get_advantage_estimator(name) is fn
    rewards, mask = _batch()
    args = (rewards, mask) if name == "reinforce_plus_plus" else (rewards, mask, INDEX)
    for out in fn(*args):
        assert out.shape == rewards.shape
        assert torch.equal(out[mask == 0], torch.zeros(int((mask == 0).sum())))
        assert not torch.isnan(out).any()


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError, match="gae.*grpo.*reinforce_plus_plus_baseline.*rloo"):
        get_advantage_estimator("gae")


@pytest.mark.parametrize("fn", [compute_grpo_outcome_advantage, compute_rloo_outcome_advantage])
def test_equal_group_is_exactly_zero_in_float64(fn):
    # in float64, (0.1 + 0.1 + 0.1) / 3 != 0.1, so a mean-based estimator alone leaves rounding residue
    rewards = torch.full((3, 2), 0.1, dtype=torch.float64)
    mask = torch.tensor([[0, 1], [0, 1], [0, 1]])
    adv, _ = fn(rewards, mask, np.array(["g", "g", "g"]))
    assert adv.dtype == torch.float64
    assert torch.equal(adv, torch.zeros_like(adv))
