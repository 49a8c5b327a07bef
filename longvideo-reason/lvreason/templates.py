"""Jinja prompt files, compiled strictly: a variable a prompt uses but a step does not pass is an error, not blank text.

Each step renders its prompts with a documented set of variables (listed in the step modules and the README), so a
custom prompt can drop any of them but cannot silently rely on one that does not exist. Two filters are added:
``mmss`` (seconds as ``mm:ss``) and ``timeline`` (a clip list as ``[mm:ss-mm:ss] caption`` lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, trim_blocks=True,
                          lstrip_blocks=True)


def _mmss(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{rest:02d}"


def _timeline(clips: list[dict[str, Any]]) -> str:
    """Captioned clips as lines ``[mm:ss-mm:ss] caption``: how every prompt shows a video's captions."""
    return "\n".join(f"[{_mmss(clip['start_s'])}-{_mmss(clip['end_s'])}] {clip['caption']}" for clip in clips)


_ENV.filters["mmss"] = _mmss
_ENV.filters["timeline"] = _timeline


class Prompt:
    """One prompt file; :meth:`render` fills it in."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist (relative names resolve in prompts_dir)")
        self.path = path
        try:
            self._template = _ENV.from_string(path.read_text())
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"prompt {path}: jinja syntax error on line {exc.lineno}: {exc.message}") from exc

    def render(self, **variables: Any) -> str:
        try:
            return self._template.render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise ValueError(f"prompt {self.path}: {exc.message}; available variables: {sorted(variables)}") from exc
