"""The main entry point on the quickstart default: artefacts generated once, a short run reported; config errors."""

import json
import re
from pathlib import Path

import pytest

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.trainer.quickstart import prepare_quickstart_default
from longrl.trainer.main import cli, main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["quickstart.num_videos=8", "quickstart.frames=8", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.num_video_frames=4",
         "data.max_response_length=8", "trainer.max_steps=1", "trainer.save_freq=1", "trainer.logger=[console,file]",
         f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]


@pytest.mark.slow
def test_main_generates_the_quickstart_default_trains_and_reports(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "quickstart"
    assert main([f"quickstart.root={root}", *SMALL]) == 0
    out = capsys.readouterr().out
    assert f"generated synthetic long-video dataset (8 videos x 8 frames, majority_colour): {root / 'data'}" in out
    assert "generated tiny random qwen2_5_vl model" in out
    assert sorted(p.name for p in (root / "data").glob("*.jsonl")) == ["test.jsonl", "train.jsonl",
                                                                    "train_annotated.jsonl", "val.jsonl"]
    assert not list(root.glob(".*")), "no staging directory is left behind"
    lines = out.splitlines()
    assert any(line.startswith("validation before training: reward ") for line in lines)
    assert any(line.startswith("validation after training: reward ") for line in lines)
    checkpoint = Path("checkpoints/longrl/quickstart_qwen2_5_vl/global_step_1")
    assert f"checkpoint: {checkpoint}" in lines
    assert f"merged Hugging Face model: {checkpoint / 'actor/huggingface'}" in lines
    assert (checkpoint / "actor/huggingface/config.json").is_file()
    assert (checkpoint / "actor/huggingface/model.safetensors").is_file()
    assert "metrics: outputs/logs/longrl/quickstart_qwen2_5_vl/metrics.jsonl" in lines
    progress = [line for line in lines if line.startswith("step ")]
    assert len(progress) == 2 and progress[0].startswith("step 0/1 | elapsed ") and " | val_reward " in progress[0]
    assert re.fullmatch(r"step 1/1 \| elapsed \d:\d\d:\d\d \| eta 0:00:00 \| reward -?\d\.\d{3} acc \d\.\d{3} "
                        r"len \d+\.\d (kl \S+ )?entropy \d+\.\d{3} val_reward .+ \| \d+\.\d s/step", progress[1])
    curves = Path("outputs/logs/longrl/quickstart_qwen2_5_vl/curves")
    assert [line for line in lines if line.startswith("curve: ")] == [
        f"curve: {curves / name}.png" for name in ("reward", "accuracy", "response_length", "kl", "entropy",
                                                   "step_time")]
    assert json.loads((curves / "curves.json").read_text())["entropy"]["series"]["actor/entropy"]["steps"] == [1]
    assert prepare_quickstart_default(load_config([f"quickstart.root={root}", *SMALL])) == []


def test_nothing_of_the_quickstart_is_generated_for_paths_outside_the_root(tmp_path: Path):
    cfg = load_config([f"quickstart.root={tmp_path / 'quickstart'}", f"data.train_files={tmp_path / 'mine.jsonl'}",
                       "data.val_files=null", f"worker.actor.model.model_path={tmp_path / 'model'}"])
    assert prepare_quickstart_default(cfg) == []
    assert not (tmp_path / "quickstart").exists()


def test_config_error_exits_2_with_the_message(capsys):
    assert main(["worker.rollout.temprature=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: unknown config key 'worker.rollout.temprature'")
    assert "Did you mean 'worker.rollout.temperature'?" in err


def test_config_error_found_by_the_run_exits_2_with_the_message(tmp_path: Path, capsys):
    def refuse(cfg) -> None:
        raise ConfigError(f"refusing to resume: {cfg.trainer.experiment_name} differs")

    paths = [f"data.train_files={tmp_path / 'train.jsonl'}", "data.val_files=null",
             f"worker.actor.model.model_path={tmp_path / 'model'}"]  # nothing of the quickstart's is generated
    assert cli([*paths, "trainer.experiment_name=other"], refuse, "config") == 2
    assert capsys.readouterr().err == "config error: refusing to resume: other differs\n"


def test_quickstart_artefacts_are_rebuilt_when_their_recipe_changes(tmp_path: Path):
    root = tmp_path / "quickstart"
    small = [f"quickstart.root={root}", "quickstart.num_videos=3", "quickstart.frames=8"]
    first = prepare_quickstart_default(load_config(small))
    assert [line.split(":")[0] for line in first] == [
        "synthetic long-video dataset (3 videos x 8 frames, majority_colour)", "tiny random qwen2_5_vl model"]
    assert prepare_quickstart_default(load_config(small)) == []  # current: reused as it is

    def rows() -> int:
        return sum(len((root / "data" / f"{split}.jsonl").read_text().splitlines()) for split in ("train", "val", "test"))

    assert rows() == 3
    again = prepare_quickstart_default(load_config([*small, "quickstart.num_videos=4"]))
    assert len(again) == 1 and again[0].startswith("synthetic long-video dataset (4 videos x 8 frames")
    assert "(rebuilt: it was made from {" in again[0] and "'num_videos': 3" in again[0]
    assert rows() == 4
    (root / "tiny-qwen2_5_vl" / "quickstart.json").unlink()  # a model built before recipes were recorded
    older = prepare_quickstart_default(load_config([*small, "quickstart.num_videos=4"]))
    assert older == [f"tiny random qwen2_5_vl model: {root / 'tiny-qwen2_5_vl'} (rebuilt: it was made from an "
                     "older generator)"]
    assert not list(root.glob(".*")), "no staging directory is left behind"
