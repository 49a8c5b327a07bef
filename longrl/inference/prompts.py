"""The format prompts a question is rendered through at inference: thinking (reason in tags, then answer) or direct.

The thinking prompt for a question about a video is, word for word, the training default
(``examples/format_prompt/r1v.jinja``, ``data.format_prompt``): a model trained with it is asked the way it learnt to
answer, and its replies carry the ``<think>``/``<answer>`` tags the r1v reward and the evaluation read. A question
without a video drops the "watch the whole video" clause. The direct prompt asks for the answer alone. All of them
list multiple-choice options with letters exactly as :mod:`longrl.data.prompts` does. A model trained with another
format prompt is evaluated with it by passing its file (``thinking_prompt=`` / ``direct_prompt=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from longrl.data.prompts import FormatPrompt

__all__ = ["PromptSet"]

# The question and its lettered options, as r1v.jinja lays them out.
_QUESTION = (
    "{{ content | trim }}\n"
    "{% if options %}\nOptions:\n{% for option in options %}{{ letters[loop.index0] }}. {{ option }}\n{% endfor %}"
    "{% endif %}\n"
)
_TAGS = ("think it through step by step inside <think> </think> tags, then give only the final answer inside "
         "<answer> </answer> tags{% if options %} as the letter of one option{% endif %}.")
THINKING_VIDEO = _QUESTION + "Watch the whole video and " + _TAGS
THINKING_TEXT = _QUESTION + _TAGS[0].upper() + _TAGS[1:]
DIRECT = (_QUESTION + "{% if options %}Answer with the letter of the correct option only."
          "{% else %}Answer with the final answer only.{% endif %}")


@dataclass(frozen=True)
class PromptSet:
    """The three prompts a request can need; :meth:`select` picks one by mode and by whether a video is present."""

    thinking_video: FormatPrompt
    thinking_text: FormatPrompt
    direct: FormatPrompt

    @classmethod
    def load(cls, thinking_prompt: str | Path | None = None, direct_prompt: str | Path | None = None) -> PromptSet:
        """The built-in prompts, with a jinja file (same variables as ``data.format_prompt``) replacing either mode."""
        thinking = FormatPrompt.from_file(thinking_prompt) if thinking_prompt is not None else None
        direct = FormatPrompt.from_file(direct_prompt) if direct_prompt is not None else None
        return cls(
            thinking_video=thinking or FormatPrompt(THINKING_VIDEO, "<thinking, video>"),
            thinking_text=thinking or FormatPrompt(THINKING_TEXT, "<thinking, text>"),
            direct=direct or FormatPrompt(DIRECT, "<direct>"),
        )

    def select(self, thinking: bool, has_video: bool) -> FormatPrompt:
        if not thinking:
            return self.direct
        return self.thinking_video if has_video else self.thinking_text
