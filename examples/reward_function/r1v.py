"""Example sequential reward: <think>...</think><answer>...</answer>, the answer graded with mathruler.

A sequential function is called once per response with one input dict and returns one score dict. ``overall``
becomes the reward; every other key (here ``format`` and ``accuracy``) is logged as a metric.

    worker.reward.reward_function=./examples/reward_function/r1v.py:compute_score

The built-in ``longrl.rewards.r1v:compute_score`` does the same with more careful matching (choice letters,
numbers with thousands separators, math_verify as a second grader); start from this file to write your own.
"""

import re
from typing import Any

from mathruler.grader import grade_answer

REWARD_NAME = "r1v"
REWARD_TYPE = "sequential"  # how the trainer calls compute_score (EasyR1's convention)

THINK_THEN_ANSWER = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def last_answer(text: str) -> str | None:
    found = ANSWER.findall(text)
    return found[-1].strip() if found else None


def format_reward(response: str) -> float:
    return 1.0 if THINK_THEN_ANSWER.fullmatch(response) else 0.0


def accuracy_reward(response: str, ground_truth: str) -> float:
    answer = last_answer(response)
    if answer is None:
        return 0.0
    # Some datasets (LongVideo-Reason) store the ground truth itself as "<answer>B</answer>".
    truth = last_answer(ground_truth) or ground_truth.strip()
    return 1.0 if grade_answer(answer, truth) else 0.0


def compute_score(reward_input: dict[str, Any], format_weight: float = 0.1) -> dict[str, float]:
    if not isinstance(reward_input, dict):
        raise TypeError("this is a sequential reward function: set reward_type=sequential")
    fmt = format_reward(reward_input["response"])
    accuracy = accuracy_reward(reward_input["response"], reward_input["ground_truth"])
    return {"overall": (1 - format_weight) * accuracy + format_weight * fmt, "format": fmt, "accuracy": accuracy}
