"""Generate the quickstart default's artefacts (synthetic dataset, tiny model) when the config points at them.

The default config's paths all live under ``quickstart.root``. Anything a user re-pointed elsewhere is left alone,
and anything already generated is reused, so preparing is free after the first run. Each artefact records what it was
built from (``quickstart.json``: the ``quickstart.*`` values and the generator's version); one built from other values
(``quickstart.num_videos=...`` changed, or an older generator) is rebuilt, never silently reused. Each artefact is built
in a sibling temporary directory and renamed into place, so an interrupted run never leaves a half-written one that
later runs would take as complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from longrl.config.schema import RootConfig


def _under(path: str | None, root: Path) -> bool:
    return path is not None and root in Path(path).resolve().parents


STAMP = "quickstart.json"


def _stamp(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _build_atomically(target: Path, recipe: dict[str, Any], build: Callable[[Path], object]) -> str | None:
    """Build ``target`` unless it exists with this ``recipe``; returns None when it was current, else "" for a first
    build or the reason it was rebuilt."""
    found = _stamp(target) if target.exists() else None
    if found == recipe:
        return None
    reason = "" if not target.exists() else f" (rebuilt: it was made from {found or 'an older generator'})"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(staging)
        (staging / STAMP).write_text(json.dumps(recipe, sort_keys=True) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return reason


def quickstart_test_split_mismatch(cfg: RootConfig) -> str | None:
    """Why ``data.test_files`` cannot be used as it is: it still names the quickstart's synthetic test split while the
    training rows are the user's own (a pipeline would then evaluate on the wrong task). None when consistent."""
    root = Path(cfg.quickstart.root).resolve()
    train = cfg.data.train_files.split(",")[0].partition("@")[0]
    if _under(cfg.data.test_files, root) and not _under(train, root):
        return (f"data.test_files ({cfg.data.test_files}) is the quickstart's synthetic test split but data.train_files "
                f"({cfg.data.train_files}) is not quickstart data; set data.test_files to your held-out split")
    return None


def prepare_quickstart_default(cfg: RootConfig) -> list[str]:
    """Create the missing quickstart artefacts referenced by ``cfg``; returns a line per thing generated."""
    root = Path(cfg.quickstart.root).resolve()
    quickstart = cfg.quickstart
    generated: list[str] = []
    data_dir = root / "data"
    data_files = [f.strip().partition("@")[0] for f in f"{cfg.data.train_files},{cfg.data.val_files or ''}".split(",")]
    if any(_under(f, root) for f in data_files if f):
        from longrl.data.synthetic import GENERATOR_VERSION, generate_dataset

        recipe = {"num_videos": quickstart.num_videos, "frames": quickstart.frames, "seed": quickstart.seed,
                  "tasks": list(quickstart.tasks), "generator_version": GENERATOR_VERSION}
        built = _build_atomically(data_dir, recipe, lambda out: generate_dataset(
            out, num=quickstart.num_videos, frames=quickstart.frames, seed=quickstart.seed, tasks=quickstart.tasks,
            annotated=True))
        if built is not None:
            generated.append(f"synthetic long-video dataset ({quickstart.num_videos} videos x {quickstart.frames} "
                             f"frames, {', '.join(quickstart.tasks)}): {data_dir}{built}")
    model_dir = Path(cfg.worker.actor.model.model_path)
    if _under(str(model_dir), root):
        from longrl.models.registry import get_adapter

        adapter = get_adapter(quickstart.model_family)
        built = _build_atomically(model_dir.resolve(), {"family": quickstart.model_family, "seed": quickstart.seed},
                                  lambda out: adapter.build_tiny(out, seed=quickstart.seed))
        if built is not None:
            generated.append(f"tiny random {quickstart.model_family} model: {model_dir}{built}")
    return generated
