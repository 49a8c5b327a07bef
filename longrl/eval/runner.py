"""Evaluate a model directory on a benchmark file: batched generation, scoring, ``metrics.json``, ``generations.jsonl``.

Every row's video is checked (its container header read) before the model is loaded, so a missing or broken video
stops the run at once, naming the file and row, instead of after hours of generation. The header also gives the
video's length for the duration buckets of rows that state no duration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.decoders import read_video_header
from longrl.data.rows import DatasetRowError
from longrl.data.video import VideoDecodeError
from longrl.eval.benchmarks import BenchmarkRow, read_benchmark
from longrl.eval.scoring import aggregate, duration_bucket, score_reply
from longrl.inference import VideoModel

__all__ = ["EvalResult", "default_output_dir", "evaluate", "format_report"]


@dataclass
class EvalResult:
    """The metrics (also in ``metrics.json``), one record per row (``generations.jsonl``), and their folder."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    output_dir: Path


def default_output_dir(model_dir: str | Path, data_file: str | Path) -> Path:
    """``outputs/eval/<model directory name>/<benchmark file stem>``: one folder per model and benchmark."""
    return Path("outputs") / "eval" / Path(model_dir).resolve().name / Path(data_file).stem


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
) -> EvalResult:
    """Greedy replies of ``model_dir`` to every row of ``data_file``, scored (:mod:`longrl.eval.scoring`), written.

    ``thinking_prompt`` replaces the built-in thinking format prompt with a jinja file (the training run's
    ``data.format_prompt``, so a model is asked the way it was trained).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fmt, rows = read_benchmark(data_file, video_dir, data_format, limit)
    durations = [_duration(row) for row in rows]
    model = VideoModel.from_pretrained(model_dir, backend, num_video_frames=num_video_frames, fps=fps,
                                       max_video_frames=max_video_frames, max_pixels=max_pixels,
                                       min_pixels=min_pixels, thinking_prompt=thinking_prompt)
    records = []
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="eval batches", unit="batch"):
            chunk = rows[start:start + batch_size]
            replies = model.generate_batch([_contents(row) for row in chunk], thinking=thinking,
                                           options=[row.options for row in chunk], max_new_tokens=max_new_tokens)
            records += [_record(row, duration, reply[0])
                        for row, duration, reply in zip(chunk, durations[start:start + batch_size], replies)]
    finally:
        model.close()
    config = {"model": str(model_dir), "data": str(data_file), "format": fmt, "backend": backend, "thinking": thinking,
              "num_video_frames": model.sampling.num_frames, "fps": fps, "max_video_frames": max_video_frames,
              "max_pixels": max_pixels, "min_pixels": min_pixels, "max_new_tokens": max_new_tokens,
              "thinking_prompt": None if thinking_prompt is None else str(thinking_prompt)}
    metrics = {**aggregate(records), "config": config}
    out = Path(output_dir) if output_dir is not None else default_output_dir(model_dir, data_file)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out / "generations.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return EvalResult(metrics, records, out)


def _contents(row: BenchmarkRow) -> list[Any]:
    return ([{"path": row.video}] if row.video is not None else []) + [row.question]


def _duration(row: BenchmarkRow) -> str | None:
    """The row's duration bucket: its stated label, or its stated seconds / its video's length bucketed."""
    seconds = None
    if row.video is not None:
        try:
            header = read_video_header(row.video)
        except VideoDecodeError as exc:
            raise DatasetRowError(row.source, row.row_index, f"unreadable video: {exc.reason}", row.video) from exc
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
             f"unanswered {metrics['unanswered']}, r1v format {metrics['format_rate']:.4f}"]
    sections: Sequence[tuple[str, Mapping[str, Any]]] = [
        *((f"per {field}", values) for field, values in metrics["per_category"].items()),
        ("per duration", metrics["per_duration"])]
    for title, values in sections:
        if values:
            lines.append(f"{title}:")
            lines += [_line(str(name), tally) for name, tally in values.items()]
    return "\n".join(lines)
