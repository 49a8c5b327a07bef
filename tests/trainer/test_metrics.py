"""Metric reductions, rollout-data statistics and throughput against hand-computed values."""

from __future__ import annotations

import math
import time

import pytest
import torch

from longrl.protocol import Batch
from longrl.trainer.metrics import (
    accuracy_fraction,
    append_metrics,
    compute_data_metrics,
    compute_throughput_metrics,
    compute_timing_metrics,
    reduce_metrics,
)
from longrl.trainer.timer import timer


def test_reduce_means_with_extrema_on_request():
    lists: dict[str, list[float]] = {}
    append_metrics(lists, {"loss": torch.tensor(1.0), "clipfrac": 0.25})
    append_metrics(lists, {"loss": [torch.tensor([2.0, 6.0])], "clipfrac": 0.75})
    assert lists == {"loss": [1.0, 2.0, 6.0], "clipfrac": [0.25, 0.75]}
    assert reduce_metrics(lists, extrema=["loss"]) == {"loss": 3.0, "loss/max": 6.0, "loss/min": 1.0, "clipfrac": 0.5}
    with pytest.raises(KeyError, match="grad_norm"):
        reduce_metrics(lists, extrema=["grad_norm"])
    with pytest.raises(ValueError, match="'empty' has no values"):
        reduce_metrics({"empty": []})


def _rollout_batch() -> Batch:
    # Four responses, max_response_length 4; prompts of 3, 2, 3, 1 tokens (left-padded to 3).
    response_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]])
    prompt_mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    advantages = torch.tensor([[1.0, 1.0, 9.0, 9.0], [-1.0, -1.0, -1.0, -1.0], [0.5, 9.0, 9.0, 9.0],
                               [2.0, 2.0, 2.0, 9.0]])
    return Batch.from_dict(
        {"response_mask": response_mask, "attention_mask": torch.cat([prompt_mask, response_mask], -1),
         "advantages": advantages},
        {"task": ["count", "order", "count", None]},
    )


def test_data_metrics_on_a_hand_made_batch():
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5])
    parts = {"accuracy": [1.0, 0.0, 0.0, 1.0], "format": [1.0, 1.0, 0.5, 0.5]}
    metrics = compute_data_metrics(_rollout_batch(), scores, max_response_length=4, reward_parts=parts)
    std = math.sqrt(((1 - 0.5) ** 2 + 0.5**2 + 0 + 0) / 4)
    expected = {
        "critic/score/mean": 0.5, "critic/score/std": std, "critic/score/max": 1.0, "critic/score/min": 0.0,
        "response_length/mean": 2.5, "response_length/max": 4.0, "response_length/min": 1.0,
        "response_length/clip_ratio": 0.25,
        "prompt_length/mean": 2.25, "prompt_length/max": 3.0, "prompt_length/min": 1.0,
        # valid advantage tokens: 1, 1, -1 x4, 0.5, 2 x3 -> sum 4.5 over 10
        "critic/advantages/mean": 0.45, "critic/advantages/max": 2.0, "critic/advantages/min": -1.0,
        "reward/accuracy": 0.5, "reward/format": 0.75,
        "critic/accuracy/mean": 0.5, "accuracy/count": 0.5, "accuracy/order": 0.0,
    }
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key


def test_per_task_accuracy_falls_back_to_the_score():
    metrics = compute_data_metrics(_rollout_batch(), torch.tensor([1.0, 0.0, 0.5, 0.5]), max_response_length=8)
    assert metrics["accuracy/count"] == pytest.approx(0.75)
    assert metrics["response_length/clip_ratio"] == 0.0


def test_plus_minus_one_accuracy_reads_as_the_share_answered_right():
    """Long-RL's dapo.py scores accuracy -1 (wrong) / +1 (right): 3 of 4 right is accuracy 0.75, not 0.5; the reward
    part's own mean stays as the reward gave it."""
    parts = {"accuracy": [1.0, -1.0, 1.0, 1.0]}
    metrics = compute_data_metrics(_rollout_batch(), torch.tensor([1.0, -1.0, 1.0, 1.0]), 4, reward_parts=parts)
    assert metrics["critic/accuracy/mean"] == 0.75 and metrics["reward/accuracy"] == 0.5
    assert metrics["accuracy/count"] == 1.0 and metrics["accuracy/order"] == 0.0
    assert accuracy_fraction([0.0, 0.25, 1.0, -1.0, -0.5, 2.0]).tolist() == [0.0, 0.25, 1.0, 0.0, 0.0, 1.0]


def test_mismatched_scores_are_refused():
    with pytest.raises(ValueError, match="3 values for a batch of 4"):
        compute_data_metrics(_rollout_batch(), torch.zeros(3), max_response_length=4)
    with pytest.raises(ValueError, match="reward part 'format' has 2"):
        compute_data_metrics(_rollout_batch(), torch.zeros(4), 4, reward_parts={"format": [1.0, 0.0]})


def test_timer_accumulates_and_throughput():
    timings: dict[str, float] = {}
    for _ in range(2):
        with timer("gen", timings):
            time.sleep(0.01)
    assert timings["gen"] >= 0.02
    with pytest.raises(RuntimeError), timer("reward", timings):
        raise RuntimeError("boom")
    assert "reward" in timings
    assert compute_timing_metrics({"gen": 1.5}) == {"timing_s/gen": 1.5}
    perf = compute_throughput_metrics(num_tokens=8000, timings={"step": 2.0}, n_gpus=4)
    assert perf == {"perf/total_num_tokens": 8000.0, "perf/time_per_step": 2.0, "perf/throughput": 1000.0,
                    "perf/tokens_per_second": 4000.0}
    with pytest.raises(KeyError, match="'step'"):
        compute_throughput_metrics(10, {"gen": 1.0}, 1)
