"""Read dataset rows from local files and normalise them to one shape.

Sources: ``.jsonl``, ``.json`` (a list of rows, or a mapping with one list under ``data``/``rows``), ``.parquet``,
and local Hugging Face dataset directories addressed as ``path@split`` (written by ``save_to_disk`` or laid out like
a hub repository). Several sources may be joined with commas. Field names come from ``data.*_key``; the
LongVideo-Reason layout (``problem_id, problem, data_type, problem_type, reasoning, videos`` with ``answer`` as
``<answer>B</answer>``) is read with ``prompt_key=problem, video_key=videos``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from longrl.config.schema import DataConfig

_ANSWER_TAG = re.compile(r"^\s*<answer>\s*(.*?)\s*</answer>\s*$", re.DOTALL)
_ID_KEYS = ("id", "problem_id", "uid")
_TASK_KEYS = ("task", "problem_type", "category")


class DatasetRowError(ValueError):
    """A row that cannot become a training sample; the message names the source file, the row and the reason.

    ``kind`` is the short name of the fault that skipped rows are counted under (``data.on_bad_row=skip``).
    """

    def __init__(self, source: str, row_index: int, reason: str, video: str | None = None,
                 kind: str = "malformed row"):
        self.source, self.row_index, self.reason, self.video, self.kind = source, row_index, reason, video, kind
        where = f"{source} row {row_index}" + (f" (video {video})" if video else "")
        super().__init__(f"{where}: {reason}")


@dataclass
class QARow:
    """One question about one video or a few images (or neither), normalised from whatever layout the file used."""

    source: str
    row_index: int
    uid: str
    question: str
    answer: str
    options: list[str] = field(default_factory=list)
    reasoning: str | None = None
    video: str | None = None
    task: str | None = None
    images: list[str] = field(default_factory=list)
    # Where the row's audio is read from (only with data.use_audio): the file it names under data.audio_key, else its
    # video (its audio track).
    audio: str | None = None


def _read_json(path: Path) -> list[dict]:
    payload = json.loads(path.read_text())
    if isinstance(payload, dict):
        for key in ("data", "rows"):
            if isinstance(payload.get(key), list):
                return payload[key]
        raise ValueError(f"{path}: a JSON object dataset must hold its rows as a list under 'data' or 'rows'")
    if not isinstance(payload, list):
        raise ValueError(f"{path}: a JSON dataset must be a list of rows")
    return payload


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open() as handle:
        for line_number, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {line_number + 1}: not valid JSON ({exc.msg})") from exc
    return rows


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _read_hf_dir(path: Path, split: str) -> list[dict]:
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path}: no split {split!r}; it has {sorted(loaded)}")
            loaded = loaded[split]
        return loaded.to_list()
    return datasets.load_dataset(str(path), split=split).to_list()


def read_source(spec: str) -> tuple[str, list[dict]]:
    """Read one source spec into raw rows; returns the display name used in errors and the rows."""
    path_text, _, split = spec.partition("@")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset {spec!r}: {path} does not exist")
    if path.is_dir():
        return spec, _read_hf_dir(path, split or "train")
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    reader = readers.get(path.suffix)
    if reader is None:
        raise ValueError(f"dataset {spec!r}: unsupported file type {path.suffix!r}; use one of {sorted(readers)} or a "
                         "Hugging Face dataset directory with path@split")
    return str(path), reader(path)


def _first_present(row: dict, keys: tuple[str, ...]) -> Any:
    return next((row[key] for key in keys if row.get(key) not in (None, "")), None)


def _video_path(value: Any, root: Path, source: str, index: int, medium: str = "video") -> str | None:
    if value in (None, "", []):
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise DatasetRowError(source, index, f"expected one {medium} per row, got {len(value)}",
                                  kind=f"several {medium} files")
        value = value[0]
    if not isinstance(value, str):
        raise DatasetRowError(source, index, f"the {medium} field must be a path string, got {type(value).__name__}")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else root / path)


def _image_paths(value: Any, root: Path, source: str, index: int) -> list[str]:
    """A row's images (one path or a list of paths), resolved like its video; shown to the model in this order."""
    if value in (None, "", []):
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    paths = []
    for position, item in enumerate(values):
        if not isinstance(item, str) or not item:
            raise DatasetRowError(source, index, f"image {position} must be a path string, got {type(item).__name__}")
        path = Path(item).expanduser()
        paths.append(str(path if path.is_absolute() else root / path))
    return paths


def normalise_row(raw: dict, index: int, source: str, cfg: DataConfig, video_root: Path,
                  image_root: Path | None = None, video_expected: bool = False) -> QARow:
    """Map a raw row onto :class:`QARow` using the configured keys; a missing field names the keys present.

    With ``video_expected`` (other rows of the file have a video) a row with no video and no images is bad: it would
    otherwise train silently as a text-only question.
    """

    def required(key: str) -> Any:
        value = raw.get(key)
        if value is None:
            raise DatasetRowError(source, index, f"missing key {key!r} (row keys: {sorted(raw)}); set data.*_key")
        return value

    answer = str(required(cfg.answer_key))
    tagged = _ANSWER_TAG.match(answer)
    options = raw.get(cfg.options_key) or []
    if not isinstance(options, list):
        raise DatasetRowError(source, index, f"{cfg.options_key!r} must be a list of option texts")
    uid = _first_present(raw, _ID_KEYS)
    task = _first_present(raw, _TASK_KEYS)
    video = _video_path(raw.get(cfg.video_key), video_root, source, index)
    images = _image_paths(raw.get(cfg.image_key), image_root or video_root, source, index)
    if video_expected and video is None and not images:
        raise DatasetRowError(source, index, f"no video under data.video_key={cfg.video_key!r} (row keys: "
                                             f"{sorted(raw)}) although other rows of this file have one",
                              kind="missing video")
    audio = None
    if cfg.use_audio:
        audio = _video_path(raw.get(cfg.audio_key), video_root, source, index, "audio") or video
    return QARow(
        source=source,
        row_index=index,
        uid=str(uid) if uid is not None else f"{source}#{index}",
        question=str(required(cfg.prompt_key)),
        answer=tagged.group(1) if tagged else answer.strip(),
        options=[str(option) for option in options],
        reasoning=raw.get(cfg.reasoning_key),
        video=video,
        task=str(task) if task is not None else None,
        images=images,
        audio=audio,
    )


def iter_rows(files: str, cfg: DataConfig,
              on_bad_row: Callable[[DatasetRowError], None] | None = None) -> Iterator[QARow]:
    """Normalised rows of every comma-separated source in ``files``, in order.

    Relative paths resolve against ``data.video_dir`` (videos, audio) and ``data.image_dir`` (images), each falling
    back to the other and then to the dataset file's directory. A row that cannot be normalised raises
    :class:`DatasetRowError`, or with ``on_bad_row`` is handed to it and left out (the reading goes on).
    """
    for spec in (part.strip() for part in files.split(",") if part.strip()):
        source, raw_rows = read_source(spec)
        default_root = Path(spec.partition("@")[0]).expanduser()
        media_dir = cfg.video_dir or cfg.image_dir
        root = Path(media_dir).expanduser() if media_dir else (
            default_root if default_root.is_dir() else default_root.parent)
        image_root = Path(cfg.image_dir).expanduser() if cfg.image_dir else root
        has_videos = any(isinstance(raw, dict) and raw.get(cfg.video_key) not in (None, "", []) for raw in raw_rows)
        for index, raw in enumerate(raw_rows):
            try:
                if not isinstance(raw, dict):
                    raise DatasetRowError(source, index, f"a row must be a mapping, got {type(raw).__name__}")
                row = normalise_row(raw, index, source, cfg, root, image_root, video_expected=has_videos)
            except DatasetRowError as exc:
                if on_bad_row is None:
                    raise
                on_bad_row(exc)
                continue
            yield row
