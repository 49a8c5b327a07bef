"""Contents lists -> one user turn: order kept, the last string rendered as the question, bad items named."""

from __future__ import annotations

import pytest

from longrl.data.prompts import FormatPrompt
from longrl.inference.contents import parse_contents

PROMPT = FormatPrompt("Q: {{ content }}"
                      "{% for option in options %} | {{ letters[loop.index0] }}) {{ option }}{% endfor %}")


def test_video_then_question_is_the_training_turn():
    request = parse_contents([{"path": "clip.mp4"}, "Which came first?"])
    assert request.video == "clip.mp4"
    assert request.messages(PROMPT, ["red", "blue"]) == [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": "Q: Which came first? | A) red | B) blue"}]}]


def test_order_is_kept_and_only_the_last_string_is_rendered():
    request = parse_contents(["Here is a clip.", {"path": "a.mp4"}, "What moves?"])
    content = request.messages(PROMPT)[0]["content"]
    assert content == [{"type": "text", "text": "Here is a clip."}, {"type": "video"},
                       {"type": "text", "text": "Q: What moves?"}]


def test_a_bare_string_is_one_text_item():
    request = parse_contents("What is 2 + 2?")
    assert request.video is None
    assert request.messages(PROMPT)[0]["content"] == [{"type": "text", "text": "Q: What is 2 + 2?"}]


@pytest.mark.parametrize("contents, message", [
    ([{"path": "a.mp4"}, {"path": "b.mp4"}, "q"], r"2 videos \(\['a.mp4', 'b.mp4'\]\)"),
    (["q", {"video": "a.mp4"}], r"item 1 must be a string or \{'path': video\}, got \['video'\]"),
    (["q", 3], r"item 1 must be a string .* got int"),
    ([{"path": "a.mp4"}], "need a question"),
])
def test_bad_contents_are_named(contents, message):
    with pytest.raises(ValueError, match=message):
        parse_contents(contents)
