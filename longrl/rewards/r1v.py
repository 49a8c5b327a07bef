"""The default reward: r1v-style format + accuracy for multiple-choice, numeric and math answers.

A response earns ``format = 1`` when it is exactly ``<think>...</think>`` followed by ``<answer>...</answer>``
(whitespace allowed around and inside the tags, nothing else), and ``accuracy = 1`` when the content of its last
``<answer>`` tag matches the ground truth. ``overall = (1 - format_weight) * accuracy + format_weight * format``.

``format_weight`` defaults to 0.1, the value of EasyR1's ``math.py`` reward (its ``r1v.py`` uses 0.5). We take the
smaller weight because the answer is what the task is about: with 0.5, a well-formatted wrong answer earns as much
as a correct one with a broken format, so GRPO's group-normalised advantage rewards the format as strongly as
being right, long after the policy has learnt the format.

Matching goes by what the ground truth looks like, most specific first:

* a multiple-choice letter -- ``B``, ``(B)``, ``B.``, ``B. some text``, or any of these wrapped in
  ``<answer>...</answer>`` as in LongVideo-Reason rows -- matches an answer that names the same letter the same
  ways (case-insensitive);
* a plain number -- ``1000``, ``1,000``, ``-2.5``, ``3e8`` -- matches a plain-number answer within a relative
  tolerance (``numeric_tolerance``), so ``1,000`` equals ``1000.0``;
* anything else, or a number answered as an expression (``\\frac{1}{2}`` for ``0.5``), is compared by
  ``mathruler``'s grader and, failing that, ``math_verify``.

A response without an ``<answer>`` tag gets accuracy 0 rather than having the whole text graded: a free-form
response cannot be searched for "the" letter or number reliably, and crediting it would leave the format nearly
unrewarded at a 0.1 weight.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Optional

from mathruler.grader import grade_answer
from math_verify import parse, verify

from longrl.rewards.types import RewardInput, RewardScore

REWARD_NAME = "r1v"
REWARD_TYPE = "sequential"

DEFAULT_FORMAT_WEIGHT = 0.1
DEFAULT_NUMERIC_TOLERANCE = 1e-6
# Seconds math_verify may spend parsing or comparing one expression (sympy can hang on adversarial input).
_MATH_VERIFY_TIMEOUT_S = 5


def _tag(name: str, closing: bool = False) -> str:
    """Regex for ``<name>`` / ``</name>`` that tolerates whitespace inside the brackets (``< /answer >``)."""
    return rf"<\s*{'/' if closing else ''}\s*{name}\s*>"


def _body_without(name: str) -> str:
    """Regex for any text that contains no opening or closing ``name`` tag."""
    return rf"(?:(?!<\s*/?\s*{name}\s*>).)*"


_FORMAT = re.compile(
    rf"\s*{_tag('think')}{_body_without('think')}{_tag('think', True)}"
    rf"\s*{_tag('answer')}{_body_without('answer')}{_tag('answer', True)}\s*",
    re.DOTALL,
)
_ANSWER = re.compile(rf"{_tag('answer')}(?P<body>{_body_without('answer')}){_tag('answer', True)}", re.DOTALL)
# A choice on its own: "B", "(B)", "B.", "B:", "B)".
_BARE_CHOICE = re.compile(r"\((?P<a>[A-Za-z])\)|(?P<b>[A-Za-z])[.:)]?")
# A choice followed by its text needs a separator, so that "A cat" is not read as choice A.
_LABELLED_CHOICE = re.compile(r"(?:\((?P<a>[A-Za-z])\)|(?P<b>[A-Za-z])[.:)])\s+\S.*", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Two or more letters in a row, once LaTeX commands are removed, mark a text answer: math_verify would read
# "cat" as the product c*a*t and call it equal to "act", so text is left to mathruler's string normalisation.
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def format_score(response: str) -> float:
    """1.0 when ``response`` is exactly a think block then an answer block, else 0.0."""
    return 1.0 if _FORMAT.fullmatch(response) else 0.0


def extract_answer(text: str) -> Optional[str]:
    """The stripped content of the last ``<answer>`` tag in ``text``, or None when there is none."""
    matches = list(_ANSWER.finditer(text))
    return matches[-1].group("body").strip() if matches else None


def _choice_letter(text: str) -> Optional[str]:
    """The letter ``text`` names as a choice, in the case it was written, or None."""
    match = _BARE_CHOICE.fullmatch(text) or _LABELLED_CHOICE.fullmatch(text)
    return (match.group("a") or match.group("b")) if match else None


def _as_number(text: str) -> Optional[float]:
    return float(text.replace(",", "")) if _NUMBER.fullmatch(text) else None


def _math_verify_equal(answer: str, ground_truth: str) -> bool:
    # math_verify's timeout uses SIGALRM, which only the main thread may set; elsewhere run without it.
    timeout = _MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None

    def as_latex(text: str) -> str:
        return text if "$" in text else f"${text}$"

    gold = parse(as_latex(ground_truth), parsing_timeout=timeout)
    given = parse(as_latex(answer), parsing_timeout=timeout)
    return bool(gold and given and verify(gold, given, timeout_seconds=timeout))


def _expressions_equal(answer: str, ground_truth: str) -> bool:
    if grade_answer(answer, ground_truth):
        return True
    if _WORD.search(_LATEX_COMMAND.sub(" ", ground_truth)):
        return False
    try:
        return _math_verify_equal(answer, ground_truth)
    except Exception:  # a grader failing on odd input (sympy errors, timeouts) means "not shown equal"
        return False


def answers_match(answer: str, ground_truth: str, numeric_tolerance: float = DEFAULT_NUMERIC_TOLERANCE) -> bool:
    """Whether an extracted ``answer`` matches ``ground_truth`` (see the module docstring for the rules)."""
    answer = answer.strip()
    ground_truth = (extract_answer(ground_truth) or ground_truth).strip()
    if not answer or not ground_truth:
        return False
    letter = _choice_letter(ground_truth)
    if letter is not None and letter.isupper():  # a lower-case "x" is a math answer, not a choice
        return (_choice_letter(answer) or "").upper() == letter
    truth_number, answer_number = _as_number(ground_truth), _as_number(answer)
    if truth_number is not None and answer_number is not None:
        return math.isclose(answer_number, truth_number, rel_tol=numeric_tolerance, abs_tol=numeric_tolerance)
    return _expressions_equal(answer, ground_truth)


def compute_score(
    reward_input: RewardInput,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    numeric_tolerance: float = DEFAULT_NUMERIC_TOLERANCE,
) -> RewardScore:
    """Sequential reward: ``{"overall", "format", "accuracy"}`` for one response (load it as
    ``longrl.rewards.r1v:compute_score`` with ``reward_type=sequential``)."""
    if not isinstance(reward_input, dict):
        raise TypeError(
            f"r1v compute_score scores one response dict, got {type(reward_input).__name__}: "
            f"use reward_type='sequential' for longrl.rewards.r1v:compute_score"
        )
    if not 0.0 <= format_weight <= 1.0:
        raise ValueError(f"format_weight must lie in [0, 1], got {format_weight}")
    response = reward_input["response"]
    fmt = format_score(response)
    answer = extract_answer(response)
    correct = answer is not None and answers_match(answer, reward_input["ground_truth"], numeric_tolerance)
    accuracy = 1.0 if correct else 0.0
    return {"overall": (1.0 - format_weight) * accuracy + format_weight * fmt, "format": fmt, "accuracy": accuracy}

