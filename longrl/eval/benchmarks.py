"""Benchmark files -> :class:`BenchmarkRow`, in three layouts, detected from the first row's keys or named.

* ``longrl``: the synthetic rows (``id, video, question, options, answer, reasoning, task``), and any file laid out
  like them; ``video`` and ``options`` may be absent (text-only questions, open-ended answers).
* ``longvideo_reason``: Long-RL's LongVideo-Reason eval rows (``problem_id, problem, videos, answer``, answer
  ``<answer>B</answer>``, category ``problem_type``); the options are usually written inside ``problem``, an
  ``options`` list is used when present; ``question`` / ``video`` are accepted for ``problem`` / ``videos``.
* ``videomme``: VideoMME rows (``videoID, question_id, question, options ["A. ...", ...], answer "A", duration
  short|medium|long, domain, sub_category, task_type``); the video is ``<video dir>/<videoID>.mp4`` (``video_id`` when
  there is no ``videoID``), and the ``A. `` labels are taken off the options (they are re-lettered when rendered).

Files are read by the training reader (:func:`longrl.data.rows.read_source`: ``.jsonl``, ``.json``, ``.parquet``).
Relative video paths resolve against the video directory, else the data file's directory. A row that lacks a key
raises :class:`~longrl.data.rows.DatasetRowError` naming the file, the row and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrl.data.rows import DatasetRowError, read_source

__all__ = ["CATEGORY_KEYS", "FORMATS", "BenchmarkRow", "detect_format", "read_benchmark"]

# Row fields reported as categories, whichever format they come in.
CATEGORY_KEYS = ("task", "category", "problem_type", "task_type", "domain", "sub_category")
_OPTION_LABEL = re.compile(r"\s*[(\[]?([A-Z])[)\].:]\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class BenchmarkRow:
    """One question, normalised: options are bare texts, ``video`` an absolute-or-resolved path (or None)."""

    source: str
    row_index: int
    uid: str
    question: str
    answer: str
    options: list[str] = field(default_factory=list)
    video: str | None = None
    categories: dict[str, str] = field(default_factory=dict)
    duration: str | float | None = None  # as the row states it: a label or seconds


class _Row:
    """Field access on one raw row that names the file, the row and the key when a required one is missing."""

    def __init__(self, raw: Mapping[str, Any], index: int, source: str, fmt: str):
        self.raw, self.index, self.source, self.fmt = raw, index, source, fmt

    def required(self, *keys: str) -> Any:
        for key in keys:
            if self.raw.get(key) not in (None, ""):
                return self.raw[key]
        named = " or ".join(repr(key) for key in keys)
        raise DatasetRowError(self.source, self.index, f"missing key {named} for format {self.fmt!r} "
                                                       f"(row keys: {sorted(self.raw)})")

    def optional(self, *keys: str) -> Any:
        return next((self.raw[key] for key in keys if self.raw.get(key) not in (None, "", [])), None)

    def options(self) -> list[str]:
        options = self.raw.get("options") or []
        if not isinstance(options, list):
            raise DatasetRowError(self.source, self.index, f"'options' must be a list, got {type(options).__name__}")
        return [str(option) for option in options]

    def error(self, reason: str) -> DatasetRowError:
        return DatasetRowError(self.source, self.index, reason)

    def common(self, question: Any, answer: Any, uid: Any, options: list[str], video: str | None) -> BenchmarkRow:
        categories = {key: str(self.raw[key]) for key in CATEGORY_KEYS if self.raw.get(key) not in (None, "")}
        return BenchmarkRow(self.source, self.index, str(uid) if uid is not None else f"{self.source}#{self.index}",
                            str(question), str(answer), options, video, categories, self.raw.get("duration"))


def _resolve(value: Any, root: Path, row: _Row) -> str | None:
    if value in (None, "", []):
        return None
    if isinstance(value, list):
        if len(value) != 1:
            raise DatasetRowError(row.source, row.index, f"expected one video per row, got {len(value)}",
                                  kind="several video files")
        value = value[0]
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else root / path)


def _longrl(row: _Row, root: Path) -> BenchmarkRow:
    return row.common(row.required("question"), row.required("answer"), row.optional("id", "uid"), row.options(),
                      _resolve(row.raw.get("video"), root, row))


def _longvideo_reason(row: _Row, root: Path) -> BenchmarkRow:
    return row.common(row.required("problem", "question"), row.required("answer"), row.optional("problem_id", "id"),
                      row.options(), _resolve(row.required("videos", "video"), root, row))


def _videomme(row: _Row, root: Path) -> BenchmarkRow:
    options = row.options()
    if not options:
        raise row.error(f"missing key 'options' for format {row.fmt!r} (row keys: {sorted(row.raw)})")
    labelled = [_OPTION_LABEL.fullmatch(option) for option in options]
    if all(match and match.group(1) == chr(ord("A") + i) for i, match in enumerate(labelled)):
        options = [match.group(2).strip() for match in labelled]
    video = root / f"{row.required('videoID', 'video_id')}.mp4"
    return row.common(row.required("question"), row.required("answer"), row.optional("question_id"), options,
                      str(video))


FORMATS: dict[str, Callable[[_Row, Path], BenchmarkRow]] = {
    "longrl": _longrl, "longvideo_reason": _longvideo_reason, "videomme": _videomme}


def detect_format(raw: Mapping[str, Any]) -> str | None:
    """The format a raw row's keys point to, or None."""
    keys = set(raw)
    if "videoID" in keys or {"video_id", "question", "options"} <= keys:
        return "videomme"
    if "problem" in keys or "videos" in keys:
        return "longvideo_reason"
    if "question" in keys:
        return "longrl"
    return None


def read_benchmark(path: str | Path, video_dir: str | Path | None = None, fmt: str = "auto",
                   limit: int | None = None,
                   on_bad_row: Callable[[DatasetRowError], None] | None = None) -> tuple[str, list[BenchmarkRow]]:
    """The format used and the first ``limit`` (default: all) rows of ``path``.

    A row that cannot be read raises :class:`DatasetRowError`, or with ``on_bad_row`` is handed to it and left out.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {fmt!r}; expected auto or one of {sorted(FORMATS)}")
    source, raws = read_source(str(path))
    if not raws:
        raise ValueError(f"{source}: no rows")
    if fmt == "auto":
        detected = detect_format(raws[0]) if isinstance(raws[0], Mapping) else None
        if detected is None:
            keys = sorted(raws[0]) if isinstance(raws[0], Mapping) else type(raws[0]).__name__
            raise DatasetRowError(source, 0, f"cannot tell the benchmark format from the row keys {keys}: longrl rows "
                                             "have 'question', LongVideo-Reason rows 'problem'/'videos', VideoMME rows "
                                             "'videoID'; or pass the format (--format)")
        fmt = detected
    root = Path(video_dir).expanduser() if video_dir is not None else Path(source).parent
    rows = []
    for index, raw in enumerate(raws[:limit]):
        try:
            if not isinstance(raw, Mapping):
                raise DatasetRowError(source, index, f"a row must be a mapping, got {type(raw).__name__}")
            rows.append(FORMATS[fmt](_Row(raw, index, source, fmt), root))
        except DatasetRowError as exc:
            if on_bad_row is None:
                raise
            on_bad_row(exc)
    return fmt, rows
