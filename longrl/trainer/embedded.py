"""Generate the embedded default's artefacts (synthetic dataset, tiny model) when the config points at them.

The default config's paths all live under ``embedded.root``. Anything a user re-pointed elsewhere is left alone,
and anything already generated is reused, so preparing is free after the first run. Each artefact is built in a
sibling temporary directory and renamed into place, so an interrupted run never leaves a half-written one that
later runs would take as complete.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from longrl.config.schema import RootConfig


def _under(path: str | None, root: Path) -> bool:
    return path is not None and root in Path(path).resolve().parents


def _build_atomically(target: Path, build: Callable[[Path], object]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def embedded_test_split_mismatch(cfg: RootConfig) -> str | None:
    """Why ``data.test_files`` cannot be used as it is: it still names the embedded synthetic test split while the
    training rows are the user's own (a pipeline would then evaluate on the wrong task). None when consistent."""
    root = Path(cfg.embedded.root).resolve()
    train = cfg.data.train_files.split(",")[0].partition("@")[0]
    if _under(cfg.data.test_files, root) and not _under(train, root):
        return (f"data.test_files ({cfg.data.test_files}) is the embedded synthetic test split but data.train_files "
                f"({cfg.data.train_files}) is not embedded data; set data.test_files to your held-out split")
    return None


def prepare_embedded_default(cfg: RootConfig) -> list[str]:
    """Create the missing embedded artefacts referenced by ``cfg``; returns a line per thing generated."""
    root = Path(cfg.embedded.root).resolve()
    embedded = cfg.embedded
    generated: list[str] = []
    data_dir = root / "data"
    data_files = [f.strip().partition("@")[0] for f in f"{cfg.data.train_files},{cfg.data.val_files or ''}".split(",")]
    if any(_under(f, root) for f in data_files if f) and not data_dir.exists():
        from longrl.data.synthetic import generate_dataset

        _build_atomically(data_dir, lambda out: generate_dataset(out, num=embedded.num_videos, frames=embedded.frames,
                                                                 seed=embedded.seed, tasks=embedded.tasks))
        generated.append(f"synthetic long-video dataset ({embedded.num_videos} videos x {embedded.frames} frames, "
                         f"{', '.join(embedded.tasks)}): {data_dir}")
    model_dir = Path(cfg.worker.actor.model.model_path)
    if _under(str(model_dir), root) and not model_dir.exists():
        from longrl.models.registry import get_adapter

        adapter = get_adapter(embedded.model_family)
        _build_atomically(model_dir.resolve(), lambda out: adapter.build_tiny(out, seed=embedded.seed))
        generated.append(f"tiny random {embedded.model_family} model: {model_dir}")
    return generated
