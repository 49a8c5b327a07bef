"""The EasyR1-style example reward files load unchanged through the loader and score as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from longrl.rewards import load_reward_function

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reward_function"


def sample(response: str, ground_truth: str) -> dict:
    return {"response": response, "response_length": 20, "ground_truth": ground_truth}


def test_batch_math_example() -> None:
    reward = load_reward_function(f"{EXAMPLES / 'math.py'}:compute_score", "batch")
    scores = reward(
        [
            sample("<think>half of one</think> So the answer is \\boxed{\\frac{1}{2}}.", "0.5"),
            sample("<think>x</think> \\boxed{3}", "0.5"),
            sample("The answer is \\boxed{0.5}", "0.5"),  # no think block
            sample("<think>x</think> It is 0.5.", "0.5"),  # nothing boxed: the format needs the box too
        ]
    )
    expected = [
        {"overall": 1.0, "format": 1.0, "accuracy": 1.0},
        {"overall": 0.1, "format": 1.0, "accuracy": 0.0},
        {"overall": 0.9, "format": 0.0, "accuracy": 1.0},
        {"overall": 0.0, "format": 0.0, "accuracy": 0.0},
    ]
    assert scores == [pytest.approx(score, abs=1e-12) for score in expected]


def test_batch_math_example_takes_format_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parents[1])  # the spec as a launch script from the repository root writes it
    reward = load_reward_function("./examples/reward_function/math.py:compute_score", "batch", {"format_weight": 0.5})
    assert reward([sample("<think>x</think> \\boxed{3}", "0.5")])[0]["overall"] == pytest.approx(0.5)


def test_sequential_r1v_example() -> None:
    reward = load_reward_function(f"{EXAMPLES / 'r1v.py'}:compute_score", "sequential")
    scores = reward(
        [
            sample("<think>the red car leaves first</think>\n<answer>B</answer>", "<answer>B</answer>"),
            sample("<think>the red car leaves first</think>\n<answer>C</answer>", "B"),
            sample("<answer>1,000</answer>", "1000"),  # no think block; mathruler strips the comma
            sample("B", "B"),  # no answer tag
        ]
    )
    expected = [
        {"overall": 1.0, "format": 1.0, "accuracy": 1.0},
        {"overall": 0.1, "format": 1.0, "accuracy": 0.0},
        {"overall": 0.9, "format": 0.0, "accuracy": 1.0},
        {"overall": 0.0, "format": 0.0, "accuracy": 0.0},
    ]
    assert scores == [pytest.approx(score, abs=1e-12) for score in expected]
