"""Example batch reward: reasoning in <think>, final answer in \\boxed{}, graded with mathruler.

A batch function receives every response of a step in one call and returns one score dict per response, in
order. Here the samples are graded one by one; the batch form pays off when a grader can work on many answers
at once (a model, a remote API).

    worker.reward.reward_function=./examples/reward_function/math.py:compute_score
    worker.reward.reward_function_kwargs.format_weight=0.1   # optional
"""

import re
from typing import Any

from mathruler.grader import extract_boxed_content, grade_answer

REWARD_NAME = "math"
REWARD_TYPE = "batch"  # how the trainer calls compute_score (EasyR1's convention)

# Reasoning first, then free text that includes a \boxed{...} answer.
THINK_THEN_BOXED = re.compile(r"\s*<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


def format_reward(response: str) -> float:
    return 1.0 if THINK_THEN_BOXED.fullmatch(response) else 0.0


def accuracy_reward(response: str, ground_truth: str) -> float:
    # extract_boxed_content returns the string "None" when nothing is boxed, so check for a box first.
    if "\\boxed{" not in response:
        return 0.0
    return 1.0 if grade_answer(extract_boxed_content(response), ground_truth) else 0.0


def compute_score(reward_inputs: list[dict[str, Any]], format_weight: float = 0.1) -> list[dict[str, float]]:
    if not isinstance(reward_inputs, list):
        raise TypeError("this is a batch reward function: set reward_type=batch")
    scores = []
    for reward_input in reward_inputs:
        fmt = format_reward(reward_input["response"])
        accuracy = accuracy_reward(reward_input["response"], reward_input["ground_truth"])
        overall = (1 - format_weight) * accuracy + format_weight * fmt
        scores.append({"overall": overall, "format": fmt, "accuracy": accuracy})
    return scores
