"""A video as the generator and solvers see it: its captioned clips in time order."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lvreason.records import read_jsonl


def load_timelines(captions: Path) -> dict[str, list[dict[str, Any]]]:
    """``video -> captioned clips`` (``index``, ``start_s``, ``end_s``, ``caption``, ...) ordered by time; clips
    without a caption are left out, and a video none of whose clips has one is absent."""
    timelines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clip in read_jsonl(captions):
        if clip["caption"]:
            timelines[clip["video"]].append(clip)
    return {video: sorted(clips, key=lambda clip: clip["index"]) for video, clips in sorted(timelines.items())}
