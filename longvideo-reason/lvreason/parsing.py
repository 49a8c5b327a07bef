"""Lenient reading of model replies: a field's text, and the option a reply chooses.

Models wrap what was asked for in all sorts of ways (a thinking block first, a tag, a "Question:" label, quotes, a
preamble line ending in a colon); these functions take the asked-for text out of any of them. A reply that still
yields nothing returns ``None`` (or ``""``), and the caller drops and counts the item: a bad reply never raises.
"""

from __future__ import annotations

import re
import string
from typing import Optional

LETTERS = string.ascii_uppercase

_THINK_BLOCK = re.compile(r"<\s*think\s*>.*?<\s*/\s*think\s*>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\([a-z0-9]\))\s+", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
# "B", "(B)", "B.", "B)", "B:" alone, or followed by the option's text after a separator.
_CHOICE_AT_START = re.compile(r"^\(?([A-Z])(?:\)|[.:)](?:\s+.*)?|\s*)$", re.DOTALL)
_ANSWER_PHRASE = re.compile(r"(?i:answer)\s*(?i:is)?\s*[:\-]?\s*\**\s*\(?([A-Z])\b")


def strip_thinking(reply: str) -> str:
    """``reply`` without ``<think>...</think>`` blocks; with a closing tag only, the text after it."""
    reply = _THINK_BLOCK.sub("", reply)
    parts = _THINK_CLOSE.split(reply)
    return parts[-1].strip()


def _tagged(text: str, tag: str) -> Optional[str]:
    """The content of the first ``<tag>`` (up to its closing tag, or the next tag, or the end), if any."""
    match = re.search(rf"<\s*{tag}\s*>(.*?)(?:<\s*/\s*{tag}\s*>|<\s*[A-Za-z/][^>]*>|$)", text,
                      re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else None


def _unwrap_line(line: str, label: str) -> str:
    line = _LIST_MARKER.sub("", line.strip())
    line = re.sub(rf"^\**\s*{re.escape(label)}\s*\**\s*:\s*\**", "", line, flags=re.IGNORECASE)
    return line.strip().strip("*").strip().strip(_QUOTES).strip()


def extract_field(reply: str, tag: str) -> str:
    """The text a reply gives for field ``tag``: inside ``<tag>`` when present, else the reply minus a thinking
    block, preamble lines that end in a colon, a ``Tag:`` label, list markers and quotes. Lines are joined by
    newlines; ``""`` when nothing is left."""
    text = strip_thinking(reply)
    tagged = _tagged(text, tag)
    if tagged is not None:
        text = tagged
    lines = [line for line in text.splitlines() if line.strip()]
    while len(lines) > 1 and lines[0].rstrip().endswith(":"):
        lines.pop(0)
    return "\n".join(filter(None, (_unwrap_line(line, tag.replace("_", " ")) for line in lines)))


def normalise(text: str) -> str:
    """Case, spacing and surrounding punctuation folded: two options that differ only in these are the same."""
    return " ".join(text.casefold().split()).strip(string.punctuation + _QUOTES + " ")


def extract_choice(reply: str, options: list[str]) -> Optional[str]:
    """The letter of the option ``reply`` chooses, or ``None``.

    Tried in order: the last ``<answer>`` tag (a letter, or an option's exact text); an "answer is B" / "Answer: B"
    phrase (the last one); the whole reply as a letter ("B", "(B)", "B. text"); the whole reply as an option's text.
    """
    valid = LETTERS[: len(options)]
    by_text = {normalise(option): LETTERS[index] for index, option in enumerate(options)}

    def as_choice(text: str) -> Optional[str]:
        text = text.strip().strip("*").strip()
        match = _CHOICE_AT_START.match(text)
        if match and match.group(1) in valid:
            return match.group(1)
        return by_text.get(normalise(text))

    text = strip_thinking(reply)
    tags = re.findall(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", text, re.DOTALL | re.IGNORECASE)
    if tags:
        return as_choice(tags[-1])
    phrases = [letter for letter in _ANSWER_PHRASE.findall(text) if letter in valid]
    if phrases:
        return phrases[-1]
    return as_choice(text)


def remove_answer_tags(text: str) -> str:
    """``text`` without ``<answer>...</answer>`` blocks: a trace's answer travels in the row's ``answer`` field."""
    return re.sub(r"<\s*answer\s*>.*?<\s*/\s*answer\s*>", "", text, flags=re.DOTALL | re.IGNORECASE).strip()
