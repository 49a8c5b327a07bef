"""A ``generate_content`` contents list -> one chat turn: strings and at most one ``{"path": video}``, order kept.

The last string is the question: it is rendered through the format prompt (with the options, if any); earlier strings
go in verbatim. ``[{"path": "clip.mp4"}, "What happens first?"]`` therefore becomes exactly the user turn training
builds for a row (:func:`longrl.data.prompts.build_messages`): the video, then the rendered question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from longrl.data.prompts import FormatPrompt

__all__ = ["Contents", "Request", "parse_contents"]

ContentItem = Union[str, Mapping[str, Any]]
Contents = Union[str, Sequence[ContentItem]]


@dataclass(frozen=True)
class Request:
    """The parsed contents: text parts in order with ``None`` where the video goes, and the video's path."""

    parts: tuple[str | None, ...]
    video: str | None

    def messages(self, prompt: FormatPrompt, options: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One user message in Hugging Face content-list form, the question rendered through ``prompt``."""
        question = max(index for index, part in enumerate(self.parts) if part is not None)
        content: list[dict[str, Any]] = []
        for index, part in enumerate(self.parts):
            if part is None:
                content.append({"type": "video"})
            else:
                text = prompt.render(part, list(options)) if index == question else part
                content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}]


def parse_contents(contents: Contents) -> Request:
    """Check and parse ``contents`` (a bare string is one text item); errors name the offending item."""
    items = [contents] if isinstance(contents, str) else list(contents)
    parts: list[str | None] = []
    videos: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, Mapping) and set(item) == {"path"}:
            videos.append(str(item["path"]))
            parts.append(None)
        else:
            shown = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(f"contents item {index} must be a string or {{'path': video}}, got {shown}")
    if len(videos) > 1:
        raise ValueError(f"contents hold {len(videos)} videos ({videos}); one video per request is supported")
    if all(part is None for part in parts):
        raise ValueError("contents need a question: at least one string item")
    return Request(tuple(parts), videos[0] if videos else None)
