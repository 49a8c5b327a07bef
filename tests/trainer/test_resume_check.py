"""Resuming checks the checkpoint's saved run: another algorithm, model or data is refused unless allowed."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.plain_pt import load_plain, save_plain
from longrl.trainer.checkpoint import CheckpointManager, find_resume, resume_run, save_run
from longrl.trainer.dataloader import PromptLoader


class _ActorFiles:
    """The actor's share of a checkpoint (its extra.pt), saved and loaded as the actor does; no Ray group needed."""

    def __init__(self) -> None:
        self.loaded: dict | None = None

    def save_checkpoint(self, directory: str) -> None:
        Path(directory).mkdir()
        save_plain({"lr_scheduler": {"last_epoch": 2}}, Path(directory) / "extra.pt")

    def load_checkpoint(self, directory: str) -> None:
        self.loaded = load_plain(Path(directory) / "extra.pt")


@pytest.fixture(scope="module")
def grpo_cfg():
    return load_config(["algorithm=grpo"])


@pytest.fixture(scope="module")
def dapo_cfg():
    return load_config(["algorithm=dapo"])


def _saved_run(root: Path, cfg) -> CheckpointManager:
    manager = CheckpointManager(root)
    save_run(manager, 2, _ActorFiles(), PromptLoader(list(range(4)), batch_size=2, seed=0), cfg, {})
    return manager


def _resume(manager: CheckpointManager, cfg) -> tuple[dict | None, _ActorFiles]:
    actor = _ActorFiles()
    return resume_run(find_resume(manager, cfg), actor, PromptLoader(list(range(4)), batch_size=2, seed=0)), actor


def test_same_run_resumes_and_says_so(tmp_path, grpo_cfg, capsys):
    state, actor = _resume(_saved_run(tmp_path, grpo_cfg), grpo_cfg)
    assert state == {"global_step": 2} and actor.loaded == {"lr_scheduler": {"last_epoch": 2}}
    assert capsys.readouterr().out == f"resumed from {tmp_path / 'global_step_2'} at step 2\n"


def test_other_algorithm_is_refused_before_anything_loads(tmp_path, grpo_cfg, dapo_cfg):
    manager = _saved_run(tmp_path, grpo_cfg)
    with pytest.raises(ConfigError) as info:
        _resume(manager, dapo_cfg)
    message = str(info.value)
    assert message.startswith(f"refusing to resume from {tmp_path / 'global_step_2'}")
    assert "  algorithm.disable_kl: checkpoint False, this run True\n" in message
    assert "  algorithm.use_kl_loss: checkpoint True, this run False\n" in message
    assert "  algorithm.online_filtering: checkpoint False, this run True\n" in message
    assert "trainer.resume_mismatch=allow" in message
    assert manager.committed_steps() == [2]


def test_other_model_and_data_are_listed(tmp_path, grpo_cfg):
    manager = _saved_run(tmp_path, grpo_cfg)
    other = load_config(["worker.actor.model.model_path=/models/other", "data.train_files=/data/other.jsonl"])
    with pytest.raises(ConfigError) as info:
        _resume(manager, other)
    assert f"  worker.actor.model.model_path: checkpoint {grpo_cfg.worker.actor.model.model_path!r}, this run " \
           "'/models/other'" in str(info.value)
    assert "  data.train_files: checkpoint" in str(info.value)


def test_allow_resumes_and_logs_the_differences(tmp_path, grpo_cfg, dapo_cfg, caplog):
    manager = _saved_run(tmp_path, grpo_cfg)
    dapo = copy.deepcopy(dapo_cfg)
    dapo.trainer.resume_mismatch = "allow"
    with caplog.at_level(logging.WARNING, logger="longrl.trainer.resume_check"):
        state, _ = _resume(manager, dapo)
    assert state == {"global_step": 2}
    assert "algorithm.disable_kl: checkpoint False, this run True" in caplog.text


def test_one_path_spelt_two_ways_is_the_same_model(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    manager = _saved_run(tmp_path / "ck", load_config([f"worker.actor.model.model_path={tmp_path / 'model'}"]))
    monkeypatch.chdir(tmp_path)
    assert _resume(manager, load_config(["worker.actor.model.model_path=model"]))[0] == {"global_step": 2}


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match=r"trainer.resume_mismatch='maybe' is not one of \['allow', 'error'\]"):
        load_config(["trainer.resume_mismatch=maybe"])
