"""Atomic commits, pruning, resume selection and RNG round trips of the checkpoint manager."""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import resource
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from longrl.config.schema import TrainerConfig
from longrl.plain_pt import save_plain
from longrl.trainer.dataloader import PromptLoader
from longrl.trainer.checkpoint import (
    LATEST_FILE,
    TRACKER_FILE,
    CheckpointManager,
    CheckpointSaveError,
    default_checkpoint_root,
    load_trainer_state,
    rng_state,
    save_run,
    save_trainer_state,
    set_rng_state,
    step_of,
)


def _save(manager: CheckpointManager, step: int) -> None:
    tmp = manager.begin(step)
    (tmp / "actor").mkdir()
    (tmp / "actor" / "weights.bin").write_bytes(bytes([step]))
    manager.commit(step)


def _entries(root) -> list[str]:
    return sorted(path.name for path in root.iterdir())


def test_default_root_follows_easyr1_layout(tmp_path):
    assert str(default_checkpoint_root(TrainerConfig(project_name="p", experiment_name="e"))) == "checkpoints/p/e"
    explicit = TrainerConfig(save_checkpoint_path=str(tmp_path / "ck"))
    assert default_checkpoint_root(explicit) == tmp_path / "ck"


def test_commit_publishes_step_and_latest(tmp_path):
    manager = CheckpointManager(tmp_path)
    _save(manager, 5)
    assert _entries(tmp_path) == [TRACKER_FILE, "global_step_5", LATEST_FILE]
    assert (tmp_path / LATEST_FILE).read_text() == "5"
    assert json.loads((tmp_path / TRACKER_FILE).read_text()) == {
        "last_global_step": 5, "last_actor_path": str(tmp_path / "global_step_5" / "actor")}
    assert (tmp_path / "global_step_5" / "actor" / "weights.bin").read_bytes() == bytes([5])
    assert manager.committed_steps() == [5]
    assert step_of(tmp_path / "global_step_5") == 5


def test_crash_before_commit_leaves_no_step_and_is_cleaned_on_restart(tmp_path):
    manager = CheckpointManager(tmp_path)
    _save(manager, 2)
    tmp = manager.begin(4)
    (tmp / "actor").mkdir()
    (tmp / "actor" / "half_written.bin").write_bytes(b"x")
    # The process dies here: no commit (nor a finished tracker write).
    (tmp_path / f".{TRACKER_FILE}.tmp-0123abcd").write_text("{")
    assert not (tmp_path / "global_step_4").exists()
    assert (tmp_path / LATEST_FILE).read_text() == "2"
    assert manager.latest_step() == 2
    restarted = CheckpointManager(tmp_path)
    assert not tmp.exists()
    assert _entries(tmp_path) == [TRACKER_FILE, "global_step_2", LATEST_FILE]
    assert restarted.find_resume_path(None) == tmp_path / "global_step_2"


def test_recommitting_a_step_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path)
    _save(manager, 3)
    tmp = manager.begin(3)
    (tmp / "new.txt").write_text("again")
    manager.commit(3)
    assert _entries(tmp_path / "global_step_3") == ["new.txt"]
    assert _entries(tmp_path) == [TRACKER_FILE, "global_step_3", LATEST_FILE]


def test_abort_removes_the_temp_dir(tmp_path):
    manager = CheckpointManager(tmp_path)
    tmp = manager.begin(1)
    manager.abort(1)
    assert not tmp.exists()
    with pytest.raises(RuntimeError, match="begin\\(1\\)"):
        manager.commit(1)


def test_save_limit_keeps_newest_steps(tmp_path):
    manager = CheckpointManager(tmp_path, save_limit=2)
    for step in (1, 2, 3):
        _save(manager, step)
    assert manager.committed_steps() == [2, 3]
    _save(manager, 4)
    assert manager.committed_steps() == [3, 4]
    assert (tmp_path / LATEST_FILE).read_text() == "4"


def test_save_limit_never_prunes_the_latest_pointer_target(tmp_path):
    manager = CheckpointManager(tmp_path, save_limit=1)
    _save(manager, 10)
    _save(manager, 6)  # a run resumed from an earlier step: step 6 is the newest save but not the highest number
    assert manager.committed_steps() == [6, 10]
    assert manager.latest_step() == 6


@pytest.mark.parametrize("limit", [0, -2])
def test_bad_save_limit_is_refused(tmp_path, limit):
    with pytest.raises(ValueError, match="trainer.save_limit"):
        CheckpointManager(tmp_path, save_limit=limit)


def test_resume_path_selection(tmp_path):
    manager = CheckpointManager(tmp_path / "root")
    assert manager.find_resume_path(None) is None
    assert manager.find_resume_path(str(tmp_path / "root")) is None  # Long-RL's 1h script names its own run folder
    _save(manager, 1)
    _save(manager, 2)
    assert manager.find_resume_path(None) == tmp_path / "root" / "global_step_2"
    assert manager.find_resume_path(str(tmp_path / "root" / "global_step_1")) == tmp_path / "root" / "global_step_1"
    with pytest.raises(FileNotFoundError, match="load_checkpoint_path=.*global_step_9"):
        manager.find_resume_path(str(tmp_path / "root" / "global_step_9"))
    assert manager.find_resume_path(str(tmp_path / "root")) == tmp_path / "root" / "global_step_2"
    next_run = CheckpointManager(tmp_path / "next")
    assert next_run.find_resume_path(str(tmp_path / "root")) == tmp_path / "root" / "global_step_2"
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="not a global_step_N directory"):
        manager.find_resume_path(str(tmp_path / "other"))


def test_latest_falls_back_to_highest_step_when_pointer_is_missing(tmp_path):
    manager = CheckpointManager(tmp_path)
    _save(manager, 1)
    _save(manager, 7)
    (tmp_path / LATEST_FILE).unlink()
    assert manager.latest_step() == 7


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist()


def test_rng_round_trip_reproduces_draws():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state()
    expected = _draws()
    _draws()  # move every generator on
    set_rng_state(state)
    assert _draws() == expected


def test_trainer_state_files_round_trip(tmp_path):
    torch.manual_seed(11), random.seed(12), np.random.seed(13)
    save_trainer_state(tmp_path, {"global_step": 4, "best": 0.5}, {"epoch": 1, "batches_in_epoch": 2})
    expected = _draws()
    _draws()
    state, loader = load_trainer_state(tmp_path)
    assert state == {"global_step": 4, "best": 0.5}
    assert loader == {"epoch": 1, "batches_in_epoch": 2}
    assert _draws() == expected
    (tmp_path / "rng.pt").unlink()
    with pytest.raises(FileNotFoundError, match="rng.pt"):
        load_trainer_state(tmp_path)


class _ActorFiles:
    """The actor's share of a checkpoint (its extra.pt), written as the actor writes it; no Ray group needed."""

    def save_checkpoint(self, directory: str) -> None:
        Path(directory).mkdir()
        save_plain({"lr_scheduler": {"last_epoch": 3}}, Path(directory) / "extra.pt")


def _save_twice_second_over_file_size_limit(root: Path, limit: int, errors) -> None:
    """Child process: step 1 saved normally, step 2 under RLIMIT_FSIZE, so its writes fail with EFBIG for real."""
    loader = PromptLoader(list(range(4)), batch_size=2, seed=0)
    manager = CheckpointManager(root)
    save_run(manager, 1, _ActorFiles(), loader, TrainerConfig(), {})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then returns EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        save_run(manager, 2, _ActorFiles(), loader, TrainerConfig(), {})
    except CheckpointSaveError as error:
        errors.put(str(error))
    else:
        errors.put("saved")


def test_write_failure_names_the_file_and_keeps_the_last_checkpoint(tmp_path):
    root = tmp_path / "ck"
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    child = context.Process(target=_save_twice_second_over_file_size_limit, args=(root, 4096, errors))
    child.start()
    message = errors.get(timeout=60)
    child.join(60)
    assert "no space left on device" in message and "File too large" in message
    assert re.search(r"\.global_step_2\.tmp-[0-9a-f]+/rng\.pt", message)  # the file whose write failed
    assert f"the last good checkpoint, {root / 'global_step_1'}, is kept" in message
    assert _entries(root) == ["checkpoint_tracker.json", "global_step_1", LATEST_FILE]
    assert (root / LATEST_FILE).read_text() == "1"
    assert json.loads((root / TRACKER_FILE).read_text())["last_global_step"] == 1
    state, loader_state = load_trainer_state(root / "global_step_1")
    assert state == {"global_step": 1} and loader_state["batches_in_epoch"] == 0
