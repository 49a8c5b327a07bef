"""The built-in r1v reward: format, answer matching by kind of ground truth, and the weighted overall.

Expected values are worked out by hand from the rules in longrl/rewards/r1v.py's docstring: with the default
format_weight w = 0.1, overall = 0.9 * accuracy + 0.1 * format, so the four outcomes are 1.0 (both), 0.9 (right
answer, broken format), 0.1 (format only) and 0.0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from longrl.rewards import RewardFunctionError, RewardTypeError, load_reward_function
from longrl.rewards.r1v import answers_match, compute_score, extract_answer, format_score


def tagged(answer: str, thought: str = "The clip shows three red cars.") -> str:
    return f"<think>{thought}</think><answer>{answer}</answer>"


def score(response: str, ground_truth: str, **kwargs: float) -> dict:
    return compute_score({"response": response, "response_length": 10, "ground_truth": ground_truth}, **kwargs)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (tagged("B"), 1.0),
        ("  <think>\n step 1\n</think>\n\n<answer> B </answer>\n", 1.0),  # whitespace around and between
        ("< think >x< /think > < answer >B</ answer >", 1.0),  # spaces inside the tags
        ("<think></think><answer></answer>", 1.0),  # empty blocks still have the format
        ("<answer>B</answer>", 0.0),  # no think block
        ("<think>x</think>", 0.0),  # no answer block
        ("<answer>B</answer><think>x</think>", 0.0),  # wrong order
        ("So: <think>x</think><answer>B</answer>", 0.0),  # text before
        ("<think>x</think><answer>B</answer> Done.", 0.0),  # text after
        ("<think>x</think> because <answer>B</answer>", 0.0),  # text between
        ("<think>x</think><answer>A</answer><answer>B</answer>", 0.0),  # two answers
        ("<think>a</think><think>b</think><answer>B</answer>", 0.0),  # two thoughts
    ],
)
def test_format_score(response: str, expected: float) -> None:
    assert format_score(response) == expected


def test_extract_answer_takes_the_last_tag_stripped() -> None:
    assert extract_answer("<answer>A</answer> no, <answer>\n C \n</answer>") == "C"
    assert extract_answer("<think>B</think>") is None


@pytest.mark.parametrize(
    ("response", "ground_truth", "expected"),
    [
        # multiple-choice letters
        (tagged("B"), "B", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("C"), "B", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("B"), "<answer>B</answer>", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),  # LongVideo-Reason
        (tagged("A"), "<answer>B</answer>", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("B"), "B. Three red cars", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("(B) Three red cars"), "B", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("B."), "(B)", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("b"), "B", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("C. Three red cars"), "B. Three red cars", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("Three red cars"), "B", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        ("<answer>B</answer>", "B", {"overall": 0.9, "format": 0.0, "accuracy": 1.0}),
        ("B", "B", {"overall": 0.0, "format": 0.0, "accuracy": 0.0}),  # no answer tag: nothing is graded
        # numbers
        (tagged("1,000"), "1000", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("1000"), "1,000", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("1,234,567.50"), "1234567.5", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("12.0"), "12", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("1001"), "1,000", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("-3"), "3", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        # math expressions
        (tagged("\\frac{1}{2}"), "0.5", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("0.5"), "\\frac{1}{2}", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("\\frac{1}{3}"), "0.5", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("(x+1)^2"), "x^2+2x+1", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        # text: equal up to case; a reordering of the letters is not the same word
        (tagged("Yes"), "yes", {"overall": 1.0, "format": 1.0, "accuracy": 1.0}),
        (tagged("act"), "cat", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),
        (tagged("A"), "A cat", {"overall": 0.1, "format": 1.0, "accuracy": 0.0}),  # "A cat" is text, not choice A
    ],
)
def test_compute_score(response: str, ground_truth: str, expected: dict) -> None:
    assert score(response, ground_truth) == pytest.approx(expected, abs=1e-12)


def test_math_verify_backs_up_mathruler() -> None:
    # mathruler refuses unreduced fractions on purpose; math_verify shows 2/4 = 1/2.
    from mathruler.grader import grade_answer

    assert not grade_answer("2/4", "1/2")
    assert answers_match("2/4", "1/2")


def test_math_grading_works_off_the_main_thread() -> None:
    # math_verify's SIGALRM timeout cannot be set outside the main thread; r1v must not fail (or score 0) there.
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(answers_match, "2/4", "1/2").result()
    assert result is True


@pytest.mark.parametrize(
    ("response", "ground_truth", "weight", "overall"),
    [
        (tagged("C"), "B", 0.5, 0.5),
        ("<answer>B</answer>", "B", 0.5, 0.5),
        (tagged("B"), "B", 0.25, 1.0),
        ("<answer>B</answer>", "B", 0.25, 0.75),
        (tagged("C"), "B", 0.0, 0.0),
    ],
)
def test_format_weight_sets_the_mix(response: str, ground_truth: str, weight: float, overall: float) -> None:
    assert score(response, ground_truth, format_weight=weight)["overall"] == pytest.approx(overall, abs=1e-12)


def test_numeric_tolerance_is_relative() -> None:
    assert score(tagged("1000.5"), "1000")["accuracy"] == 0.0
    assert score(tagged("1000.5"), "1000", numeric_tolerance=1e-3)["accuracy"] == 1.0


def test_format_weight_outside_unit_interval_is_an_error_named_by_the_loader() -> None:
    with pytest.raises(ValueError, match="format_weight must lie in"):
        score(tagged("B"), "B", format_weight=1.5)
    reward = load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {"format_weight": -0.1})
    with pytest.raises(RewardFunctionError, match=r"longrl.rewards.r1v:compute_score raised ValueError"):
        reward([{"response": tagged("B"), "response_length": 3, "ground_truth": "B"}])


def test_loaded_as_batch_it_explains_the_type_to_use() -> None:
    reward = load_reward_function("longrl.rewards.r1v:compute_score", "batch")
    with pytest.raises(RewardTypeError, match="it is a sequential function. Set REWARD_TYPE = \"sequential\""):
        reward([{"response": tagged("B"), "response_length": 3, "ground_truth": "B"}])
