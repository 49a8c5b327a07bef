"""Rewards off the critical path: process workers give the in-process scores; the scorer runs in the background."""

from __future__ import annotations

import threading

import pytest

from longrl.rewards import RewardFunctionError, load_reward_function
from longrl.trainer.rewarding import ParallelReward

INPUTS = [{"response": f"<think>t</think><answer>{answer}</answer>", "response_length": 4, "ground_truth": truth}
          for answer, truth in [("A", "A"), ("B", "A"), ("1,000", "1000"), ("x", "y"), ("C", "(C)")]]

RAISES_ON_Y = '''
def compute_score(reward_input):
    if reward_input["ground_truth"] == "y":
        raise ValueError("cannot grade y")
    return {"overall": 1.0}
'''


@pytest.mark.slow
def test_process_workers_match_in_process_scores_and_report_the_failing_sample(tmp_path):
    fn = load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {})
    parallel = ParallelReward(fn, num_workers=2)
    try:
        assert parallel(INPUTS) == fn(INPUTS)
    finally:
        parallel.close()
    (tmp_path / "raises.py").write_text(RAISES_ON_Y)
    failing = ParallelReward(load_reward_function(str(tmp_path / "raises.py"), "sequential", {}), num_workers=2)
    try:
        with pytest.raises(RewardFunctionError, match=r"raises\.py.*ValueError: cannot grade y"):
            failing(INPUTS)
    finally:
        failing.close()


def test_scorer_runs_the_reward_beside_the_caller(monkeypatch):
    from longrl.trainer import rewarding

    release = threading.Event()
    calls = []

    def slow_score(batch, inputs, reward_fn, cfg):
        calls.append(threading.current_thread().name)
        release.wait(timeout=30)
        return "scores", {"accuracy": [1.0]}

    monkeypatch.setattr(rewarding, "reward_inputs", lambda batch, tokenizer: ["input"])
    monkeypatch.setattr(rewarding, "score_batch", slow_score)
    scorer = rewarding.RewardScorer(reward_fn=lambda inputs: [], cfg=None, tokenizer=None)
    pending = scorer.submit("batch")
    assert not pending.done()  # submit returned while the reward is still running
    release.set()
    scored = pending.result(timeout=30)
    assert scored.scores == "scores" and scored.parts == {"accuracy": [1.0]}
    assert scored.metrics["timing_s/reward_compute"] >= 0
    assert calls[0].startswith("reward")
    scorer.close()


def test_accuracy_filter_reads_plus_minus_one_accuracy_as_a_fraction():
    """Long-RL's dapo.py gives accuracy -1/+1: a group half right has raw mean 0, which filter_low=0.01 would drop as
    all wrong; read in [0, 1] it is 0.5 and kept. The parts keep the reward's own values."""
    import numpy as np
    import torch

    from longrl.algos import online_filter_mask
    from longrl.trainer.rewarding import ScoredBatch

    accuracy = [1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    scored = ScoredBatch([], torch.tensor(accuracy), {"accuracy": accuracy}, {})
    assert scored.accuracy().tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    uid = np.array(["a"] * 4 + ["b"] * 4)
    keep = online_filter_mask(scored.filter_values(), uid, "accuracy", 0.01, 0.99)
    assert keep.tolist() == [True] * 4 + [False] * 4
    assert scored.filter_values()["overall"].tolist() == accuracy and scored.parts["accuracy"] == accuracy
