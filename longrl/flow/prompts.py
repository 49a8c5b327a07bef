"""Prompt rows for generation models, read from jsonl in GenEval's metadata style.

One row per line::

    {"tag": "color_attr", "prompt": "a photo of a red car and a blue bench",
     "include": [{"class": "car", "count": 1, "color": "red"},
                 {"class": "bench", "count": 1, "color": "blue", "position": ["right of", 0]}]}

Only the prompt is required (its key is ``data.prompt_key``, default ``prompt``); ``tag`` and ``include`` are
checked when present, because the composition reward reads them (``include[i].position = [relation, j]`` places
object ``i`` relative to object ``j``), and a malformed entry found there steps later would be far from its cause.
Every other key is kept in the row's ``metadata`` and reaches the reward function unchanged. Errors name the file
and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from torch.utils.data import Dataset

__all__ = ["GENEVAL_RELATIONS", "PromptDataset", "PromptRow", "PromptRowError", "read_prompt_rows"]

GENEVAL_RELATIONS = ("left of", "right of", "above", "below")


class PromptRowError(ValueError):
    """A prompt file or one of its rows cannot be used; the message names the file and line."""


class PromptRow(TypedDict):
    index: int  # position in the dataset (all files, in order): the prompt's group id
    prompt: str
    metadata: dict[str, Any]  # the whole row as read (tag, include, ...)


def _check_include(include: Any, where: str) -> None:
    if not isinstance(include, list):
        raise PromptRowError(f"{where}: 'include' must be a list of {{class, count, ...}} entries, got "
                             f"{type(include).__name__}")
    for i, entry in enumerate(include):
        if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
            raise PromptRowError(f"{where}: include[{i}] must be an object with a string 'class', got {entry!r}")
        count = entry.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise PromptRowError(f"{where}: include[{i}].count must be a positive integer, got {count!r}")
        if "color" in entry and not isinstance(entry["color"], str):
            raise PromptRowError(f"{where}: include[{i}].color must be a string, got {entry['color']!r}")
        if "position" in entry:
            position = entry["position"]
            ok = (isinstance(position, list) and len(position) == 2 and position[0] in GENEVAL_RELATIONS
                  and isinstance(position[1], int) and 0 <= position[1] < len(include) and position[1] != i)
            if not ok:
                raise PromptRowError(
                    f"{where}: include[{i}].position must be [relation, index of another include entry] with a "
                    f"relation among {list(GENEVAL_RELATIONS)}, got {position!r}")


def read_prompt_rows(files: str, prompt_key: str = "prompt") -> list[PromptRow]:
    """The rows of one or several (comma-separated) jsonl files, in order; raises :class:`PromptRowError`."""
    rows: list[PromptRow] = []
    for name in (part.strip() for part in files.split(",") if part.strip()):
        path = Path(name)
        if not path.is_file():
            raise PromptRowError(f"prompt file {name!r} not found")
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{name}, line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptRowError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise PromptRowError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
            prompt = row.get(prompt_key)
            if not isinstance(prompt, str) or not prompt.strip():
                raise PromptRowError(f"{where}: no prompt text under {prompt_key!r} (data.prompt_key); the row has "
                                     f"keys {sorted(row)}")
            if "tag" in row and not isinstance(row["tag"], str):
                raise PromptRowError(f"{where}: 'tag' must be a string, got {row['tag']!r}")
            if "include" in row:
                _check_include(row["include"], where)
            rows.append({"index": len(rows), "prompt": prompt, "metadata": row})
    if not rows:
        raise PromptRowError(f"no prompt rows in {files!r}")
    return rows


class PromptDataset(Dataset):
    """The rows of :func:`read_prompt_rows` as a map-style dataset (what the resumable prompt loader takes)."""

    def __init__(self, files: str, prompt_key: str = "prompt"):
        self.rows = read_prompt_rows(files, prompt_key)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> PromptRow:
        return self.rows[index]
