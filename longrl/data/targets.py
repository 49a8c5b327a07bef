"""The supervised target of a row: its reasoning trace and answer, written the way the RL stage's reward reads them.

CoT-SFT teaches the format the RL stage then rewards (``<think>…</think><answer>…</answer>``, the r1v format), so
the default target is exactly that; ``sft.target_template`` replaces it with a jinja file over ``reasoning``,
``answer``, ``question`` and ``options`` (e.g. for a reward that reads another format).
"""

from __future__ import annotations

from pathlib import Path

from longrl.data.prompts import compile_template, read_template_file
from longrl.data.rows import QARow

DEFAULT_TARGET = "{% if reasoning %}<think>{{ reasoning | trim }}</think>{% endif %}<answer>{{ answer }}</answer>"


class TargetTemplate:
    """A compiled target template; rows without a reasoning trace get the answer alone under the default."""

    def __init__(self, source: str = DEFAULT_TARGET, name: str = "<default>"):
        self.name = name
        self._template = compile_template(source, f"sft.target_template {name}")

    @classmethod
    def from_file(cls, path: str | Path | None) -> "TargetTemplate":
        """``sft.target_template``; ``None`` gives the default."""
        if path is None:
            return cls()
        return cls(read_template_file(path, "sft.target_template"), str(path))

    def render(self, row: QARow) -> str:
        return self._template.render(reasoning=row.reasoning, answer=row.answer, question=row.question,
                                     options=row.options).strip()
