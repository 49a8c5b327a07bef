"""Turn a normalised row into chat messages through a jinja format prompt.

Format prompts are EasyR1-style jinja files that receive the question as ``content``; longrl also passes
``options`` (the option texts) and ``letters`` (``"ABCD…"``) so a multiple-choice prompt lists its options the
same way everywhere. Without a format prompt the question and its lettered options are used as they are.
"""

from __future__ import annotations

import string
from pathlib import Path

import jinja2

from longrl.data.rows import QARow

OPTION_LETTERS = string.ascii_uppercase
_PLAIN = "{{ content | trim }}{% for option in options %}\n{{ letters[loop.index0] }}. {{ option }}{% endfor %}"


def compile_template(source: str, what: str) -> jinja2.Template:
    """A jinja template whose undefined variables raise instead of rendering as empty text; ``what`` names it in
    errors (e.g. ``"format prompt examples/format_prompt/r1v.jinja"``)."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"{what}: jinja syntax error on line {exc.lineno}: {exc.message}") from exc


def read_template_file(path: str | Path, key: str) -> str:
    """The text of a template file named by config ``key``; a missing file names the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} does not exist")
    return path.read_text()


class FormatPrompt:
    """A compiled format prompt; undefined variables raise instead of rendering as empty text."""

    def __init__(self, source: str, name: str = "<inline>"):
        self.name = name
        self._template = compile_template(source, f"format prompt {name}")

    @classmethod
    def from_file(cls, path: str | Path | None) -> "FormatPrompt":
        """Load ``path`` (``data.format_prompt``); ``None`` gives the plain question-plus-options prompt."""
        if path is None:
            return cls(_PLAIN, "<plain>")
        return cls(read_template_file(path, "data.format_prompt"), str(path))

    def render(self, question: str, options: list[str]) -> str:
        if len(options) > len(OPTION_LETTERS):
            raise ValueError(f"at most {len(OPTION_LETTERS)} options are supported, got {len(options)}")
        try:
            return self._template.render(content=question, options=options, letters=OPTION_LETTERS).strip()
        except jinja2.UndefinedError as exc:
            raise ValueError(f"format prompt {self.name}: {exc.message}; available variables: content, options, "
                             "letters") from exc


def build_messages(row: QARow, prompt: FormatPrompt) -> list[dict]:
    """One user turn: the row's images in order, then its video, then its audio (when it has them), then the rendered
    question text.

    Media come before the text as in Qwen-VL's and EasyR1's prompts; the model adapters and MR-SP rely on this order
    (a row's feature stream is its images' features, then its video's, then its audio's)."""
    content: list[dict] = [{"type": "image"} for _ in row.images]
    content += [{"type": "video"}] if row.video else []
    content += [{"type": "audio"}] if row.audio else []
    content.append({"type": "text", "text": prompt.render(row.question, row.options)})
    return [{"role": "user", "content": content}]
