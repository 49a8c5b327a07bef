"""The rollout's counter-based draws (longrl/workers/rollout/draws.py) against a reference written here from the seed
rule in its docstring, with Python's unbounded integers (no 16-bit split of the multiplications)."""

from __future__ import annotations

import math

import pytest
import torch

from longrl.workers.rollout.draws import RowSampler, sample_key, uniform
from longrl.workers.rollout.sampling import sample_seed


def _lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _reference_uniform(seed: int, prompt: int, sample: int, column: int) -> float:
    value = sample_seed(seed, prompt, sample) % 2**64
    key = _lowbias32(_lowbias32(value % 2**32 ^ 0x243F6A88) ^ (value // 2**32))
    a = _lowbias32(key ^ _lowbias32(column ^ 0x85EBCA6B))
    b = _lowbias32(a ^ 0x68E31DA4)
    return ((a >> 5) * 2**26 + (b >> 6)) / 2**53


def _reference_token(scores: torch.Tensor, u: float) -> int:
    """Inverse CDF: the first token whose running probability sum exceeds ``u`` times the total."""
    probs = torch.softmax(scores.double(), -1).tolist()
    cumulative = 0.0
    running = []
    for p in probs:
        cumulative += p
        running.append(cumulative)
    target = u * running[-1]
    return next(index for index, value in enumerate(running) if value > target)


SEEDS = [0, 1, 7, 2**40 + 3, -5, 1_000_003 * 123_456 + 9]


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_follows_the_documented_seed_rule(seed):
    batch, n, first = 2, 3, 1
    sampler = RowSampler(False, seed, batch, n, first, torch.device("cpu"))
    assert sampler.keys.tolist() == [sample_key(seed, p, first + k) for p in range(batch) for k in range(n)]
    for column in (0, 1, 2, 17, 511, 2**31 + 5):
        for as_tensor in (False, True):
            got = uniform(sampler.keys, torch.tensor(column) if as_tensor else column)
            assert got.dtype == torch.float64
            expected = [_reference_uniform(seed, p, first + k, column) for p in range(batch) for k in range(n)]
            assert got.tolist() == expected
            assert all(0.0 <= u < 1.0 for u in expected)
    tabled = RowSampler(False, seed, batch, n, first, torch.device("cpu"), columns=20)
    for column in (0, 7, 19):
        expected = [_reference_uniform(seed, p, first + k, column) for p in range(batch) for k in range(n)]
        assert tabled.table[:, column].tolist() == expected


def test_draws_are_the_inverse_cdf_of_the_rows_uniform_and_skip_removed_tokens():
    generator = torch.Generator().manual_seed(0)
    batch, n, vocab, seed = 3, 4, 50, 11
    sampler = RowSampler(False, seed, batch, n, 0, torch.device("cpu"))
    tabled = RowSampler(False, seed, batch, n, 0, torch.device("cpu"), columns=6)
    for column in range(6):
        scores = torch.randn(batch * n, vocab, generator=generator) * 2
        scores[:, ::3] = -math.inf  # removed by a processor: never drawn
        tokens = sampler(scores, torch.tensor(column)).tolist()
        assert tabled(scores, torch.tensor(column)).tolist() == tokens
        for row, token in enumerate(tokens):
            u = _reference_uniform(seed, row // n, row % n, column)
            assert token == _reference_token(scores[row], u)
            assert token % 3 != 0


def test_a_sample_draws_the_same_whatever_else_is_in_the_call():
    """Sample k of prompt i draws the same tokens in a call of samples 0..3 as in a call of samples 2..3 only, and
    its tokens do not depend on the other rows' scores."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(2 * 4, 30, generator=generator)
    whole = RowSampler(False, 5, 2, 4, 0, torch.device("cpu"))
    part = RowSampler(False, 5, 2, 2, 2, torch.device("cpu"))
    later = [2, 3, 6, 7]  # samples 2 and 3 of prompts 0 and 1 in the call of all four: part's rows
    for column in range(5):
        all_rows = whole(scores, column)
        assert part(scores[later], column).tolist() == all_rows[later].tolist()
        changed = scores.clone()
        changed[[0, 1, 4, 5]] = torch.randn(4, 30, generator=generator)
        assert whole(changed, column)[later].tolist() == all_rows[later].tolist()


def test_draws_follow_the_probabilities():
    """20,000 samples of one distribution (one per seed): every frequency within 4.5 standard errors."""
    probs = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0])
    scores = probs.log().expand(20_000, -1)
    sampler = RowSampler(False, 3, 20_000, 1, 0, torch.device("cpu"))
    for column in (0, 9):
        counts = torch.bincount(sampler(scores, column), minlength=len(probs)).double()
        expected = probs.double() * 20_000
        spread = (expected * (1 - probs.double())).sqrt().clamp(min=1.0)
        assert torch.all((counts - expected).abs() <= 4.5 * spread), (counts, expected)
        assert counts[-1] == 0


def test_greedy_takes_the_argmax_and_unseeded_uses_the_process_state():
    scores = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 1.5]])
    assert RowSampler(True, 3, 1, 2, 0, torch.device("cpu"))(scores, 0).tolist() == [1, 0]
    unseeded = RowSampler(False, None, 1, 2, 0, torch.device("cpu"))
    torch.manual_seed(4)
    first = unseeded(scores, 0)
    torch.manual_seed(4)
    assert torch.equal(unseeded(scores, 0), first)
