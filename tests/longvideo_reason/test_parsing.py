"""Lenient reply parsing, options built in code, and the refine/filter decision rules on planted replies."""

from __future__ import annotations

import pytest

from lvreason.filters import decide_answerable, decide_rollout, decide_single_clip
from lvreason.generate import build_options
from lvreason.parsing import extract_choice, extract_field, normalise
from lvreason.refine import refined_trace

OPTIONS = ["he slices onions", "he washes the pan", "he leaves the kitchen", "he fries eggs"]
ITEM = {"item_id": "v.mp4::temporal", "options": OPTIONS, "answer": "D"}


@pytest.mark.parametrize("reply, expected", [
    ("<question>What happens after the pan is washed?</question>", "What happens after the pan is washed?"),
    ("<think>they want a temporal one</think>\n<question>Why now?</question>", "Why now?"),
    ("Sure! Here is the question:\n**Question:** \"What is cooked last?\"", "What is cooked last?"),
    ("<QUESTION> Unclosed tag at the end", "Unclosed tag at the end"),
    ("reasoning first</think>Question: What next?", "What next?"),
    ("   \n\n  ", ""),
    ("<question></question>", ""),
])
def test_extract_field(reply, expected):
    assert extract_field(reply, "question") == expected


def test_extract_field_keeps_lines_and_strips_list_markers():
    assert extract_field("1. He leaves\n2. He runs", "distractor") == "He leaves\nHe runs"
    assert extract_field("<reasoning>First the pan.\n\nThen eggs.</reasoning><answer>D</answer>", "reasoning") == (
        "First the pan.\nThen eggs.")


@pytest.mark.parametrize("reply, expected", [
    ("<answer>D</answer>", "D"),
    ("<think>maybe A</think><answer> (B) </answer>", "B"),
    ("<answer>he fries eggs</answer>", "D"),  # the option's text instead of its letter
    ("<answer>B. he washes the pan</answer>", "B"),
    ("So the answer is C.", "C"),
    ("Answer: (A) because ...", "A"),
    ("First B seems right, but the answer is D", "D"),
    ("C", "C"),
    ("He fries eggs.", "D"),
    ("<answer>E</answer>", None),  # not one of four options
    ("A pan is washed", None),  # a sentence that starts with a word "A" is no choice
    ("<answer>z</answer> the answer is B", None),  # the tag is what counts when there is one
    ("", None),
])
def test_extract_choice(reply, expected):
    assert extract_choice(reply, OPTIONS) == expected


def test_options_are_shuffled_by_item_and_the_letter_is_known():
    options, letter = build_options("he fries eggs", ["a", "b", "c"], seed=0, item_id="x")
    assert sorted(options) == ["a", "b", "c", "he fries eggs"]
    assert options["ABCD".index(letter)] == "he fries eggs"
    assert build_options("he fries eggs", ["a", "b", "c"], seed=0, item_id="x") == (options, letter)
    letters = {build_options("right", ["w1", "w2", "w3"], seed=0, item_id=f"item{i}")[1] for i in range(40)}
    assert letters == set("ABCD")  # the answer does not sit at one position


def test_normalise_folds_case_space_and_end_punctuation():
    assert normalise("  He  fries EGGS. ") == normalise("\"he fries eggs\"") == "he fries eggs"


@pytest.mark.parametrize("reply, require_answer, expected", [
    (["<reasoning>At the start he washes the pan; later eggs go in. So the answer is D.</reasoning>"], True,
     ("At the start he washes the pan; later eggs go in. So the answer is D.", "ok")),
    (["Watching: pan, then eggs.\n<answer>D</answer>"], True, ("Watching: pan, then eggs.", "ok")),
    (["He leaves, so the answer is C."], True, (None, "wrong_answer")),
    (["He leaves."], True, (None, "wrong_answer")),
    (["He leaves."], False, ("He leaves.", "ok")),
    (["<answer>D</answer>"], True, (None, "empty")),
    (None, True, (None, "no_reply")),
])
def test_refined_trace(reply, require_answer, expected):
    assert refined_trace(reply, ITEM, require_answer) == expected


def test_decision_rules_at_their_bounds():
    assert decide_answerable(["<answer>D</answer>"], ITEM).kept
    assert decide_answerable(["gibberish"], ITEM).reason == "no parseable choice, the answer is D"
    assert not decide_answerable(None, ITEM).kept
    one_of_three = [["<answer>D</answer>"], ["<answer>A</answer>"], ["??"]]
    assert not decide_single_clip(one_of_three, ITEM, max_accuracy=0.0).kept
    assert decide_single_clip(one_of_three, ITEM, max_accuracy=1 / 3).kept  # <= is inclusive
    assert decide_single_clip(one_of_three, ITEM, max_accuracy=0.0).detail["choices"] == ["D", "A", None]
    half = ["<answer>D</answer>", "<answer>A</answer>"]
    assert decide_rollout(half, ITEM, low=0.0, high=1.0).kept
    assert not decide_rollout(half, ITEM, low=0.5, high=1.0).kept  # strictly between
    assert not decide_rollout(["<answer>D</answer>"] * 2, ITEM, low=0.0, high=1.0).kept
    assert not decide_rollout(["no idea"] * 2, ITEM, low=0.0, high=1.0).kept
