"""Evaluate a model directory on a benchmark file: batched generation, scoring, ``metrics.json``, ``generations.jsonl``.

Every row's video is checked (its container header read) before the model is loaded, so a missing or broken video
stops the run at once, naming the file and row, instead of after hours of generation; with ``on_bad_row="skip"``
(training's ``data.on_bad_row``) such rows, and rows whose video fails while decoding, are left out of the scores
and counted in the metrics instead. The header also gives the video's length for the duration buckets of rows that
state no duration.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.config.validate import BAD_ROW_POLICIES
from longrl.data.dataset import SkippedRow, summarise_skips
from longrl.data.decoders import read_video_header
from longrl.data.rows import DatasetRowError
from longrl.data.video import VideoDecodeError
from longrl.eval.benchmarks import BenchmarkRow, read_benchmark
from longrl.eval.scoring import aggregate, duration_bucket, score_reply
from longrl.inference import VideoModel

__all__ = ["EvalResult", "default_output_dir", "evaluate", "format_report", "model_tag"]

logger = logging.getLogger(__name__)

# Path components of a model directory that name the folder of its results (run / step / actor / merged).
_TAG_PARTS = 4


@dataclass
class EvalResult:
    """The metrics (also in ``metrics.json``), one record per row (``generations.jsonl``), and their folder."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    output_dir: Path


def model_tag(model_dir: str | Path) -> str:
    """A folder name for a model: the last components of its path joined by ``--`` (a checkpoint's run, step and
    ``actor/merged`` alike) and a short hash of the whole path, so two checkpoints never share a folder."""
    path = Path(model_dir).expanduser()
    full = path.resolve() if path.exists() else path  # a hub ID stays as written
    parts = [part for part in full.parts if part not in (full.anchor, "")][-_TAG_PARTS:]
    return "--".join([*parts, hashlib.sha1(str(full).encode()).hexdigest()[:8]])


def default_output_dir(model_dir: str | Path, data_file: str | Path) -> Path:
    """``outputs/eval/<model tag>/<benchmark file stem>``: one folder per model (:func:`model_tag`) and benchmark."""
    return Path("outputs") / "eval" / model_tag(model_dir) / Path(data_file).stem


def evaluate(
    model_dir: str | Path,
    data_file: str | Path,
    *,
    video_dir: str | Path | None = None,
    data_format: str = "auto",
    thinking: bool = True,
    num_video_frames: int | None = None,
    fps: float | None = None,
    max_video_frames: int = RolloutConfig.max_video_frames,
    max_pixels: int = DataConfig.max_pixels,
    min_pixels: int = DataConfig.min_pixels,
    thinking_prompt: str | Path | None = None,
    backend: str = "hf",
    batch_size: int = 8,
    max_new_tokens: int = 1024,
    output_dir: str | Path | None = None,
    limit: int | None = None,
    on_bad_row: str = DataConfig.on_bad_row,
    trust_remote_code: bool = False,
    constant_frames: bool = False,
) -> EvalResult:
    """Greedy replies of ``model_dir`` to every row of ``data_file``, scored (:mod:`longrl.eval.scoring`), written.

    ``thinking_prompt`` replaces the built-in thinking format prompt with a jinja file (the training run's
    ``data.format_prompt``, so a model is asked the way it was trained). ``on_bad_row`` is ``data.on_bad_row``:
    "error" stops at the first row that cannot be read, "skip" leaves it out of the scores and counts it
    (``skipped_rows`` and ``skipped`` in the metrics). ``trust_remote_code`` lets the model directory's own
    Python code run. ``constant_frames`` scores the control: every frame replaced by its video's median frame, so a
    model that uses the video falls to chance (``metrics["chance"]``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row must be one of {list(BAD_ROW_POLICIES)}, got {on_bad_row!r}")
    skipped: list[SkippedRow] = []
    skip = (lambda exc: skipped.append(SkippedRow.from_error(exc))) if on_bad_row == "skip" else None
    fmt, rows = read_benchmark(data_file, video_dir, data_format, limit, skip)
    durations = {}
    for row in rows:
        try:
            durations[row.row_index] = _duration(row)
        except DatasetRowError as exc:
            if skip is None:
                raise
            skip(exc)
    rows = [row for row in rows if row.row_index in durations]
    if skipped:
        logger.warning(summarise_skips(str(data_file), len(rows), skipped))
    _check_some_left(rows, skipped, data_file)
    model = VideoModel.from_pretrained(model_dir, backend, num_video_frames=num_video_frames, fps=fps,
                                       max_video_frames=max_video_frames, max_pixels=max_pixels,
                                       min_pixels=min_pixels, thinking_prompt=thinking_prompt,
                                       trust_remote_code=trust_remote_code, constant_frames=constant_frames)
    records = []
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="eval batches", unit="batch"):
            replies = _replies(model, rows[start:start + batch_size], skip, thinking=thinking,
                               max_new_tokens=max_new_tokens)
            records += [_record(row, durations[row.row_index], reply) for row, reply in replies]
    finally:
        model.close()
    _check_some_left(records, skipped, data_file)
    config = {"model": str(model_dir), "data": str(data_file), "format": fmt, "backend": backend, "thinking": thinking,
              "num_video_frames": model.sampling.num_frames, "fps": fps, "max_video_frames": max_video_frames,
              "max_pixels": max_pixels, "min_pixels": min_pixels, "max_new_tokens": max_new_tokens,
              "thinking_prompt": None if thinking_prompt is None else str(thinking_prompt), "on_bad_row": on_bad_row,
              "constant_frames": constant_frames}
    metrics = {**aggregate(records), "skipped_rows": len(skipped),
               "skipped": [{"row": row.row_index, "video": row.file, "reason": row.reason} for row in skipped],
               "config": config}
    out = Path(output_dir) if output_dir is not None else default_output_dir(model_dir, data_file)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out / "generations.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return EvalResult(metrics, records, out)


def _check_some_left(rows: Sequence[Any], skipped: list[SkippedRow], data_file: str | Path) -> None:
    if not rows:
        kinds = Counter(row.kind for row in skipped)
        raise ValueError(f"no row of {data_file} could be evaluated ({len(skipped)} skipped: {dict(kinds)})")


def _replies(model: VideoModel, chunk: list[BenchmarkRow], skip: Callable[[DatasetRowError], None] | None,
             **generation: Any) -> list[tuple[BenchmarkRow, str]]:
    """Each row of ``chunk`` with its reply. A row whose video fails to decode raises, naming the row, or under the
    skip policy is counted and the rest of the chunk is generated again without it."""
    while chunk:
        try:
            replies = model.generate_batch([_contents(row) for row in chunk], options=[row.options for row in chunk],
                                           **generation)
        except VideoDecodeError as exc:
            bad = next((row for row in chunk if row.video == exc.path), None)
            if bad is None:
                raise
            error = DatasetRowError(bad.source, bad.row_index, f"unreadable video: {exc.reason}", bad.video,
                                    kind="unreadable video")
            if skip is None:
                raise error from exc
            skip(error)
            logger.warning("dropping %s", error)
            chunk = [row for row in chunk if row is not bad]
            continue
        return [(row, reply[0]) for row, reply in zip(chunk, replies)]
    return []


def _contents(row: BenchmarkRow) -> list[Any]:
    return ([{"path": row.video}] if row.video is not None else []) + [row.question]


def _duration(row: BenchmarkRow) -> str | None:
    """The row's duration bucket: its stated label, or its stated seconds / its video's length bucketed."""
    seconds = None
    if row.video is not None:
        try:
            header = read_video_header(row.video)
        except VideoDecodeError as exc:
            raise DatasetRowError(row.source, row.row_index, f"unreadable video: {exc.reason}", row.video,
                                  kind="unreadable video") from exc
        seconds = header.num_frames / header.fps
    if row.duration is None:
        return None if seconds is None else duration_bucket(seconds)
    try:
        return duration_bucket(float(row.duration))
    except ValueError:
        return str(row.duration)


def _record(row: BenchmarkRow, duration: str | None, reply: str) -> dict[str, Any]:
    scored = score_reply(reply, row.answer, row.options, row.question)
    return {"id": row.uid, "video": row.video, "question": row.question, "options": row.options, "gold": row.answer,
            "generation": reply, "extracted": scored.extracted, "correct": scored.correct,
            "formatted": scored.formatted, "categories": row.categories, "duration": duration}


def _line(name: str, tally: Mapping[str, Any]) -> str:
    return f"  {name:<28} {tally['accuracy']:.4f}  ({tally['correct']}/{tally['total']})"


def format_report(metrics: Mapping[str, Any]) -> str:
    """The metrics as a few aligned lines: overall, then each category field's values, then the duration buckets."""
    lines = [f"accuracy {metrics['accuracy']:.4f} ({metrics['correct']}/{metrics['total']}), "
             f"unanswered {metrics['unanswered']}, r1v format {metrics['format_rate']:.4f}"
             + ("" if metrics.get("chance") is None else f", chance {metrics['chance']:.4f}")]
    if metrics.get("skipped_rows"):
        lines.append(f"skipped {metrics['skipped_rows']} rows that could not be read (on_bad_row=skip; each is "
                     "listed in metrics.json)")
    sections: Sequence[tuple[str, Mapping[str, Any]]] = [
        *((f"per {field}", values) for field, values in metrics["per_category"].items()),
        ("per duration", metrics["per_duration"])]
    for title, values in sections:
        if values:
            lines.append(f"{title}:")
            lines += [_line(str(name), tally) for name, tally in values.items()]
    return "\n".join(lines)
