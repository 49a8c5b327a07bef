"""Scoring and aggregation on planted replies: known letters, known accuracies, known buckets."""

from __future__ import annotations

import pytest

from longrl.eval.scoring import (
    Scored,
    aggregate,
    duration_bucket,
    extract_choice,
    gold_choice,
    option_letters,
    score_reply,
)


@pytest.mark.parametrize("reply, letter", [
    ("B", "B"),
    ("B.", "B"),
    ("(B)", "B"),
    ("b", "B"),
    ("  C  ", "C"),
    ("B. the red square", "B"),
    ("(D) the last one", "D"),
    ("The answer is B", "B"),
    ("The answer is (C).", "C"),
    ("Answer: D", "D"),
    ("The correct option is B, not A.", "B"),
    ("Based on the video, B", "B"),
    ("<think>A or B? The ball moved left twice.</think><answer>B</answer>", "B"),
    ("<think>it is C</think> <answer>B. the left cup</answer>", "B"),
    ("<answer>Option D</answer>", "D"),
    ("A cat sits on the mat.", None),  # an article, not a choice
    ("I think the ball is hidden.", None),  # a pronoun
    ("B or C", None),  # ambiguous
    ("E", None),  # not one of the four options
    ("", None),
])
def test_letter_extraction(reply, letter):
    assert extract_choice(reply, "ABCD") == letter


@pytest.mark.parametrize("answer, options, letter", [
    ("B", [], "B"),
    ("<answer>B</answer>", [], "B"),
    ("B. three cups", [], "B"),
    ("(C)", [], "C"),
    ("three", ["two", "three"], "B"),
    ("42", [], None),
    ("a", [], None),  # lower case: a math answer, not a choice
    ("Bob", [], None),
])
def test_gold_letter(answer, options, letter):
    assert gold_choice(answer, options) == letter


def test_options_inside_the_question_bound_the_letters():
    question = "Which comes first?\nA. red\nB. green\n(C) blue"
    assert option_letters([], question) == "ABC"
    assert option_letters(["x", "y"], question) == "AB"
    assert option_letters([], "No options here.") == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert score_reply("<answer>C</answer>", "<answer>C</answer>", [], question).correct
    assert score_reply("D", "<answer>C</answer>", [], question).extracted is None


def test_open_ended_answers_use_the_r1v_matcher():
    assert score_reply("<think>..</think><answer>1,000</answer>", "1000") == Scored("1,000", True, True)
    assert score_reply("12", "12.0").correct  # no tags: the whole reply is the answer
    assert score_reply("<answer>cat</answer>", "dog") == Scored("cat", False, False)
    assert score_reply("   ", "dog").extracted is None


@pytest.mark.parametrize("seconds, bucket", [
    (0, "0-2min"), (119.9, "0-2min"), (120, "2-10min"), (599, "2-10min"), (600, "10-30min"), (1800, "30min+"),
    (7200, "30min+"),
])
def test_duration_buckets(seconds, bucket):
    assert duration_bucket(seconds) == bucket


# (task, video seconds, gold, planted reply, is it right)
PLANTED = [
    ("counting", 30, "B", "<think>two flashes</think><answer>B</answer>", True),
    ("counting", 90, "<answer>C</answer>", "The answer is C.", True),
    ("counting", 200, "A. four", "(A)", True),
    ("counting", 700, "D", "<answer>A</answer>", False),
    ("shell_game", 45, "A", "A", True),
    ("shell_game", 300, "B", "I think it is under the left cup.", False),  # names no letter
    ("shell_game", 2000, "C", "C. the right cup", True),
    ("temporal_order", 100, "D", "<think>red, then blue</think><answer>Option D</answer>", True),
    ("temporal_order", 1000, "B", "<answer>C</answer>", False),
    ("temporal_order", 4000, "A", "Answer: A", True),
]


def test_planted_replies_give_the_known_accuracies():
    records = []
    for task, seconds, gold, reply, right in PLANTED:
        scored = score_reply(reply, gold, ["w", "x", "y", "z"])
        assert scored.correct is right, (reply, gold)
        records.append({"correct": scored.correct, "extracted": scored.extracted, "formatted": scored.formatted,
                        "categories": {"task": task}, "duration": duration_bucket(seconds)})
    records.append({**records[0], "duration": None, "categories": {}})  # a text-only row: overall only
    metrics = aggregate(records[:-1])
    assert (metrics["accuracy"], metrics["correct"], metrics["total"]) == (0.7, 7, 10)
    assert metrics["unanswered"] == 1 and metrics["format_rate"] == 0.2
    assert metrics["per_category"] == {"task": {
        "counting": {"accuracy": 0.75, "correct": 3, "total": 4},
        "shell_game": {"accuracy": 2 / 3, "correct": 2, "total": 3},
        "temporal_order": {"accuracy": 2 / 3, "correct": 2, "total": 3}}}
    assert metrics["per_duration"] == {
        "0-2min": {"accuracy": 1.0, "correct": 4, "total": 4},
        "2-10min": {"accuracy": 0.5, "correct": 1, "total": 2},
        "10-30min": {"accuracy": 0.0, "correct": 0, "total": 2},
        "30min+": {"accuracy": 1.0, "correct": 2, "total": 2}}
    assert list(metrics["per_duration"]) == ["0-2min", "2-10min", "10-30min", "30min+"]
    with_text_row = aggregate(records)
    assert (with_text_row["total"], with_text_row["correct"]) == (11, 8)
    assert with_text_row["per_duration"] == metrics["per_duration"]
    assert with_text_row["per_category"] == metrics["per_category"]


def test_stated_labels_follow_the_bucket_order():
    records = [{"correct": c, "extracted": "A", "formatted": False, "categories": {}, "duration": d}
               for c, d in [(True, "long"), (False, "short"), (True, "short"), (True, "0-2min")]]
    per_duration = aggregate(records)["per_duration"]
    assert list(per_duration) == ["0-2min", "long", "short"]
    assert per_duration["short"] == {"accuracy": 0.5, "correct": 1, "total": 2}


def test_chance_is_the_mean_of_uniform_guessing_over_each_rows_options():
    row = {"correct": False, "extracted": "A", "formatted": True, "categories": {}, "duration": None}
    four, two = {**row, "options": ["w", "x", "y", "z"]}, {**row, "options": ["yes", "no"]}
    assert aggregate([four, four, two])["chance"] == (0.25 + 0.25 + 0.5) / 3
    assert aggregate([four, {**row, "options": None}])["chance"] is None  # an open question has no chance level
