"""Scoring replies and aggregating scores: pure functions, no model and no files.

Multiple choice (the row has options, or its gold answer is a letter): the chosen letter is read from the reply's last
``<answer>`` tag when there is one, else from the whole reply, and compared with the gold letter. Reading a letter
tries, in order: the text is a letter alone (``B``, ``(B)``, ``B.``); it starts with a labelled option (``B. a cat``);
it names one after "answer" / "option" / "choice" (``The answer is B``; the last such mention counts); exactly one
distinct option letter stands alone in it (an article "A" before a word and a pronoun "I" do not count). Only letters
of the row's options count (for rows whose options sit inside the question text, the option labels found there).

Open-ended: the reply's ``<answer>`` content (else the whole reply) is compared with the gold answer by the r1v
reward's matcher (:func:`longrl.rewards.r1v.answers_match`): numbers by value, text and math by normalised
equivalence. Thinking-mode training and evaluation thus share one grader.

Duration buckets, for rows without a stated duration (from the video's length): ``0-2min``, ``2-10min``,
``10-30min``, ``30min+`` (the lower bound belongs to the bucket). A stated duration that is a label (VideoMME's
``short`` / ``medium`` / ``long``) is used as it is; a number is seconds and is bucketed.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from longrl.rewards.r1v import answers_match, extract_answer, format_score

__all__ = ["DURATION_BUCKETS", "Scored", "aggregate", "duration_bucket", "extract_choice", "gold_choice",
           "option_letters", "score_reply"]

LETTERS = string.ascii_uppercase
# (label, upper bound in seconds, exclusive)
DURATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-2min", 120.0), ("2-10min", 600.0), ("10-30min", 1800.0), ("30min+", float("inf")))

# A letter alone, possibly bracketed and followed by a period/colon/parenthesis.
_ALONE = re.compile(r"\s*[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:)]?\s*")
# An option label at the start, then its text: "B. cat", "(B) cat", "B: cat", "B) cat".
_LABELLED = re.compile(r"\s*(?:[(\[]([A-Z])[)\]]|([A-Z])[.:)])\s*\S")
# "answer is B", "Answer: (C)", "the correct option is D", "choice B".
_NAMED = re.compile(r"(?i:answer|option|choice)\s*(?:(?i:is|would be|should be)\s*)?[:：]?\s*"
                    r"[(\[]?([A-Z])[)\]]?(?!\w)")
# A capital letter standing alone; "A" or "I" before a lower-case word is an article or a pronoun ("A cat", "I think").
_LONE = re.compile(r"(?<![\w'’])([B-HJ-Z]|[AI](?!\s+[a-z]))(?![\w'’])")
# Option labels at line starts inside a question ("A. ...", "(B) ...").
_QUESTION_LABELS = re.compile(r"(?m)^\s*[(\[]?([A-Z])[)\].:]\s")
_GOLD = re.compile(r"\s*[(\[]?([A-Z])[)\]]?(?:[.:)]\s*.*)?", re.DOTALL)


def option_letters(options: Sequence[str], question: str = "") -> str:
    """The letters a reply may choose: one per option; without options, the labels found in ``question``, else A-Z."""
    if options:
        return LETTERS[:len(options)]
    found = "".join(dict.fromkeys(_QUESTION_LABELS.findall(question)))
    return found or LETTERS


def gold_choice(answer: str, options: Sequence[str] = ()) -> str | None:
    """The gold letter of a multiple-choice row (``B``, ``<answer>B</answer>``, ``B. text``, or an option's text when
    the row has options), or None for an open-ended answer."""
    text = (extract_answer(answer) or answer).strip()
    match = _GOLD.fullmatch(text)
    if match:
        return match.group(1)
    folded = [option.strip().casefold() for option in options]
    if text.casefold() in folded:
        return LETTERS[folded.index(text.casefold())]
    return None


def extract_choice(reply: str, letters: str = LETTERS) -> str | None:
    """The option letter ``reply`` chooses, or None when it names none (or names several without saying which)."""
    body = extract_answer(reply)
    text = body if body is not None else reply
    alone = _ALONE.fullmatch(text)
    if alone and alone.group(1).upper() in letters:
        return alone.group(1).upper()
    labelled = _LABELLED.match(text)
    if labelled and (labelled.group(1) or labelled.group(2)) in letters:
        return labelled.group(1) or labelled.group(2)
    named = [letter for letter in _NAMED.findall(text) if letter in letters]
    if named:
        return named[-1]
    lone = {letter for letter in _LONE.findall(text) if letter in letters}
    return lone.pop() if len(lone) == 1 else None


@dataclass(frozen=True)
class Scored:
    """One reply's score: what was read from it (None: nothing), whether it is right, whether it is r1v-formatted."""

    extracted: str | None
    correct: bool
    formatted: bool


def score_reply(reply: str, answer: str, options: Sequence[str] = (), question: str = "") -> Scored:
    """Score ``reply`` against the gold ``answer`` (multiple choice or open-ended, see the module docstring)."""
    formatted = format_score(reply) == 1.0
    gold = gold_choice(answer, options)
    if gold is not None:
        choice = extract_choice(reply, option_letters(options, question))
        return Scored(choice, choice == gold, formatted)
    body = extract_answer(reply)
    given = (body if body is not None else reply).strip()
    if not given:
        return Scored(None, False, formatted)
    return Scored(given, answers_match(given, answer), formatted)


def duration_bucket(seconds: float) -> str:
    """The bucket label of a video ``seconds`` long."""
    if seconds < 0:
        raise ValueError(f"a duration must be >= 0 seconds, got {seconds}")
    return next(label for label, upper in DURATION_BUCKETS if seconds < upper)


def _tally(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    correct = sum(1 for record in records if record["correct"])
    return {"accuracy": correct / len(records), "correct": correct, "total": len(records)}


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per category field and value, and per duration bucket, with counts.

    A record has ``correct`` (bool), ``extracted`` (None when nothing was read), ``formatted`` (bool),
    ``options`` (its choices, empty or None for an open question), ``categories`` (field -> value) and ``duration``
    (a bucket label, or None for a row without video). ``chance`` is the accuracy of guessing uniformly among each
    row's options (None when some row is open-ended), the bar a constant-frame control is read against.
    Buckets are listed in :data:`DURATION_BUCKETS` order, then any stated labels in order of appearance.
    """
    if not records:
        raise ValueError("no records to aggregate")
    by_category: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    by_duration: dict[str, list] = defaultdict(list)
    for record in records:
        for field, value in record["categories"].items():
            by_category[field][value].append(record)
        if record["duration"] is not None:
            by_duration[record["duration"]].append(record)
    order = [label for label, _ in DURATION_BUCKETS if label in by_duration]
    order += [label for label in by_duration if label not in order]
    return {
        **_tally(records),
        "unanswered": sum(1 for record in records if record["extracted"] is None),
        "format_rate": sum(1 for record in records if record["formatted"]) / len(records),
        "chance": (None if not all(record.get("options") for record in records)
                   else sum(1 / len(record["options"]) for record in records) / len(records)),
        "per_category": {field: {value: _tally(group) for value, group in sorted(values.items())}
                         for field, values in by_category.items()},
        "per_duration": {label: _tally(by_duration[label]) for label in order},
    }
