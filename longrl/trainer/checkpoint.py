"""Atomic, resumable checkpoints laid out as EasyR1 / verl users expect.

Layout under the root (``trainer.save_checkpoint_path``, else ``checkpoints/<project_name>/<experiment_name>``)::

    root/global_step_N/actor/              written by the actor worker (DCP model/optim, huggingface/)
    root/global_step_N/trainer_state.json  written by the trainer, with rng.pt and dataloader.pt
    root/latest_checkpointed_iteration.txt "N"
    root/checkpoint_tracker.json           {"last_global_step": N, "last_actor_path": ...}: EasyR1's resume pointer,
                                           so its tools find the last step too

A step is written by several owners (the driver and the actor ranks), possibly over minutes, so a crash can
land in the middle. Everything for step N therefore goes into ``root/.global_step_N.tmp-<uuid>/`` first;
:meth:`CheckpointManager.commit` fsyncs it, renames it to ``global_step_N`` (one atomic rename) and only then moves
the latest pointer (temp file + ``os.replace``). So a ``global_step_N`` directory is always complete, and the
pointer only ever names a complete step. Stale temp directories from a crashed run are removed when the next
manager starts.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from longrl.config.schema import TrainerConfig
from longrl.plain_pt import load_plain, save_plain, write_file
from longrl.trainer.resume_check import CONFIG_FILE, check_resume_matches

LATEST_FILE = "latest_checkpointed_iteration.txt"
TRACKER_FILE = "checkpoint_tracker.json"
STEP_PREFIX = "global_step_"
TRAINER_STATE_FILE = "trainer_state.json"
RNG_FILE = "rng.pt"
DATALOADER_FILE = "dataloader.pt"

logger = logging.getLogger(__name__)

# What a full disk looks like: the OS errors, and torch's own file writer's words for them (it drops the errno).
_OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OUT_OF_SPACE_WORDS = ("No space left on device", "Disk quota exceeded", "File too large", "unexpected pos",
                       "file write failed")


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; the partial step was removed and the previous checkpoint is intact."""

_STEP_DIR = re.compile(rf"^{STEP_PREFIX}(\d+)$")
_STALE = re.compile(rf"^\.({STEP_PREFIX}\d+\.(tmp|old)|({re.escape(LATEST_FILE)}|{re.escape(TRACKER_FILE)})\.tmp)"
                    r"-[0-9a-f]+$")


def default_checkpoint_root(trainer: TrainerConfig) -> Path:
    """``trainer.save_checkpoint_path`` if set, else ``checkpoints/<project_name>/<experiment_name>``."""
    if trainer.save_checkpoint_path:
        return Path(trainer.save_checkpoint_path)
    return Path("checkpoints") / trainer.project_name / trainer.experiment_name


class CheckpointManager:
    """Owns the checkpoint root: opens a temp directory per step, commits it atomically, prunes, finds resumes.

    Only the driver creates one; workers receive the directory from :meth:`begin` and write their subdirectory
    into it (the root must be on a filesystem every worker sees).
    """

    def __init__(self, root: str | Path, save_limit: int = -1) -> None:
        if save_limit == 0 or save_limit < -1:
            raise ValueError(
                f"trainer.save_limit must be -1 (keep all) or a positive count, got {save_limit}; "
                "to save no checkpoints set trainer.save_freq=-1"
            )
        self.root = Path(root)
        self.save_limit = save_limit
        self._pending: dict[int, Path] = {}
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_stale()

    # ------------------------------------------------------------------ writing

    def step_dir(self, step: int) -> Path:
        """Where step ``step`` lives once committed."""
        return self.root / f"{STEP_PREFIX}{step}"

    def begin(self, step: int) -> Path:
        """Create and return the temp directory that every owner writes step ``step`` into."""
        if step in self._pending:
            raise RuntimeError(f"checkpoint for step {step} already begun at {self._pending[step]}; commit or abort it")
        tmp = self.root / f".{STEP_PREFIX}{step}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        self._pending[step] = tmp
        return tmp

    def commit(self, step: int) -> Path:
        """Make step ``step`` durable and visible: fsync, rename into place, then move the latest pointer.

        Re-saving a step that already exists (a resumed run redoing steps after the pointer) replaces it.
        """
        if step not in self._pending:
            raise RuntimeError(f"no checkpoint begun for step {step}: call begin({step}) before commit({step})")
        tmp = self._pending.pop(step)
        try:
            _fsync_tree(tmp)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = self.step_dir(step)
        displaced = None
        if final.exists():
            displaced = self.root / f".{STEP_PREFIX}{step}.old-{uuid.uuid4().hex}"
            os.rename(final, displaced)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        _write_text_atomic(self.root / LATEST_FILE, str(step))
        _write_text_atomic(self.root / TRACKER_FILE,
                           json.dumps({"last_global_step": step, "last_actor_path": str(final / "actor")}))
        if displaced is not None:
            shutil.rmtree(displaced)
        self._prune()
        return final

    def abort(self, step: int) -> None:
        """Drop an uncommitted step (e.g. a worker failed while saving)."""
        tmp = self._pending.pop(step, None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def clean_stale(self) -> list[Path]:
        """Remove temp directories and pointer files left by a run that crashed mid-save; returns what was removed."""
        stale = [path for path in self.root.iterdir()
                 if _STALE.match(path.name) and path not in self._pending.values()]
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return sorted(stale)

    def _prune(self) -> None:
        """Keep the newest ``save_limit`` committed steps (never the one the latest pointer names)."""
        if self.save_limit == -1:
            return
        latest = self.latest_step()
        for step in self.committed_steps()[: -self.save_limit]:
            if step != latest:
                shutil.rmtree(self.step_dir(step))

    # ------------------------------------------------------------------ reading

    def committed_steps(self) -> list[int]:
        """Steps with a committed ``global_step_N`` directory, ascending."""
        steps = [int(m.group(1)) for path in self.root.iterdir() if path.is_dir() and (m := _STEP_DIR.match(path.name))]
        return sorted(steps)

    def latest_step(self) -> int | None:
        """The step the latest pointer names if that directory exists, else the highest committed step."""
        pointer = self.root / LATEST_FILE
        if pointer.is_file():
            text = pointer.read_text().strip()
            if text.isdigit() and self.step_dir(int(text)).is_dir():
                return int(text)
        steps = self.committed_steps()
        return steps[-1] if steps else None

    def find_resume_path(self, load_checkpoint_path: str | Path | None) -> Path | None:
        """The step directory to resume from: an explicit path wins (a step, or a run's folder meaning its latest
        step), else the latest committed step, else None."""
        if load_checkpoint_path:
            path = Path(load_checkpoint_path)
            if not path.is_dir():
                raise FileNotFoundError(
                    f"trainer.load_checkpoint_path={str(load_checkpoint_path)!r} does not exist; point it at a "
                    f"{STEP_PREFIX}N directory or leave it unset to resume from the latest step under {self.root}"
                )
            if _STEP_DIR.match(path.name):
                return path
            # A run's folder, as Long-RL's scripts pass it: the step its tracker names; this run's own: its latest
            # step, or a fresh start while it has none.
            if path.resolve() == self.root.resolve():
                latest = self.latest_step()
                return None if latest is None else self.step_dir(latest)
            if (path / TRACKER_FILE).is_file():
                return path / f"{STEP_PREFIX}{json.loads((path / TRACKER_FILE).read_text())['last_global_step']}"
            raise ValueError(
                f"trainer.load_checkpoint_path={str(load_checkpoint_path)!r} is not a {STEP_PREFIX}N directory "
                f"(the step number is read from its name) nor a run's folder (with {TRACKER_FILE})"
            )
        latest = self.latest_step()
        return None if latest is None else self.step_dir(latest)


def step_of(step_dir: str | Path) -> int:
    """The global step encoded in a ``global_step_N`` directory name."""
    match = _STEP_DIR.match(Path(step_dir).name)
    if match is None:
        raise ValueError(f"{step_dir} is not a {STEP_PREFIX}N directory")
    return int(match.group(1))


# ---------------------------------------------------------------------- one run's save and resume


def save_run(manager: CheckpointManager, step: int, workers: Any, loader: Any, cfg: Any,
             state: dict[str, Any]) -> Path:
    """Checkpoint a run at ``step``: the workers' ``actor/``, the loop ``state`` (plus ``global_step``), the data
    loader's position and RNG states, and the config; committed atomically. Shared by the RL and SFT stages.

    A write that fails (a full disk, most often) removes the partial step and raises :class:`CheckpointSaveError`
    saying what the OS said and which checkpoint is still the last good one.
    """
    staging = manager.begin(step)
    try:
        workers.save_checkpoint(str(staging / "actor"))
        save_trainer_state(staging, {"global_step": step, **state}, loader.state_dict())
        write_file(staging / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        return manager.commit(step)
    except Exception as error:
        manager.abort(step)
        reason = _write_failure(error)
        if reason is None:
            raise
        last = manager.latest_step()
        kept = f"the last good checkpoint, {manager.step_dir(last)}, is kept" if last is not None else \
            "there is no earlier checkpoint"
        raise CheckpointSaveError(
            f"saving the checkpoint of step {step} into {staging} failed: {reason}. The partial step was removed and "
            f"{kept}; free space under {manager.root} (or lower trainer.save_limit) and resume."
        ) from error


def find_resume(manager: CheckpointManager, cfg: Any) -> Path | None:
    """The step directory this run resumes from (see :meth:`CheckpointManager.find_resume_path`), once its saved run
    is known to be this one (see :func:`check_resume_matches`); None when starting fresh. Cheap, so a run calls it
    before starting any worker."""
    path = manager.find_resume_path(cfg.trainer.load_checkpoint_path)
    if path is not None:
        check_resume_matches(path, cfg)
    return path


def resume_run(path: Path | None, workers: Any, loader: Any) -> dict[str, Any] | None:
    """Restore the workers, the loader's position and the RNG states from ``path`` (from :func:`find_resume`);
    returns the saved loop state, or None when starting fresh."""
    if path is None:
        return None
    state, loader_state = load_trainer_state(path)
    workers.load_checkpoint(str(path / "actor"))
    loader.load_state_dict(loader_state)
    print(f"resumed from {path} at step {state['global_step']}", flush=True)
    note = fresh_optimizer_note(path)
    if note is not None:
        logger.warning("%s", note)
    return state


def fresh_optimizer_note(step_dir: str | Path) -> str | None:
    """What a resume from ``step_dir`` loses, when it was saved with ``trainer.save_model_only=true`` (no ``optim/``):
    the optimizer's state starts fresh; None for a full checkpoint."""
    if (Path(step_dir) / "actor" / "optim").is_dir():
        return None
    return (f"{step_dir} was saved with trainer.save_model_only=true and holds no optimizer state: the weights, the "
            "lr schedule, the data position and the RNG states resume, but the optimizer starts fresh (AdamW moments "
            "at zero), so this run does not continue exactly as an uninterrupted one would")


def _write_failure(error: BaseException) -> str | None:
    """What went wrong in words, if ``error`` (or an error it wraps: a cause, a Ray task's cause) is a failed write;
    None for other errors, which are not ours to reword."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__ or getattr(error, "cause", None)
    os_errors = [e for e in seen if isinstance(e, OSError) and e.errno is not None]
    if any(e.errno in _OUT_OF_SPACE_ERRNOS for e in os_errors) or \
            any(word in str(e) for e in seen for word in _OUT_OF_SPACE_WORDS):
        detail = str(os_errors[0]) if os_errors else str(seen[-1]).strip().splitlines()[-1]
        return f"no space left on device (or over a file-size or disk-quota limit): {detail}"
    return str(os_errors[0]) if os_errors else None


# ---------------------------------------------------------------------- the trainer's own files


def save_trainer_state(step_dir: str | Path, state: dict[str, Any], dataloader_state: dict[str, Any]) -> None:
    """Write ``trainer_state.json`` (JSON-serialisable loop state), ``rng.pt`` and ``dataloader.pt``."""
    step_dir = Path(step_dir)
    write_file(step_dir / TRAINER_STATE_FILE, json.dumps(state, indent=2, sort_keys=True))
    save_plain(rng_state(), step_dir / RNG_FILE)
    save_plain(dataloader_state, step_dir / DATALOADER_FILE)


def load_trainer_state(step_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore the RNG states from ``rng.pt`` and return ``(trainer_state, dataloader_state)``."""
    step_dir = Path(step_dir)
    for name in (TRAINER_STATE_FILE, RNG_FILE, DATALOADER_FILE):
        if not (step_dir / name).is_file():
            raise FileNotFoundError(f"checkpoint {step_dir} has no {name}; it was not written by the longrl trainer")
    set_rng_state(load_plain(step_dir / RNG_FILE))
    state = json.loads((step_dir / TRAINER_STATE_FILE).read_text())
    return state, load_plain(step_dir / DATALOADER_FILE)


def rng_state() -> dict[str, Any]:
    """Python ``random``, numpy, torch CPU and (where present) every CUDA device's generator state.

    Numpy's key array is stored as a tensor so the file loads with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`; CUDA states are restored for the devices present in both runs."""
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` needs tuples; a serialiser may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------- durability


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root``, so the rename publishes data that is on disk."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and ``os.replace``: readers see the old or the new text."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)
