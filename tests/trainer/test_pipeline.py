"""The two-stage pipeline: CoT-SFT, then RL from the merged SFT model, with the test split evaluated after each."""

import json
from pathlib import Path

import pytest
import yaml

from longrl.trainer.pipeline import main, run_pipeline, split_stage_arguments

REPO = Path(__file__).resolve().parents[2]
SHARED = ["embedded.num_videos=10", "embedded.frames=8", "worker.rollout.num_video_frames=4", "trainer.logger=[file]",
          f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
SFT = ["--sft", "trainer.max_steps=3", "data.rollout_batch_size=4", "worker.actor.global_batch_size=4",
       "worker.actor.micro_batch_size_per_device_for_update=4"]
RL = ["--rl", "trainer.max_steps=1", "trainer.save_freq=1", "data.rollout_batch_size=2",
      "worker.actor.global_batch_size=2", "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=4"]


def test_arguments_are_split_by_stage_markers():
    assert split_stage_arguments(["a=1", "--sft", "b=2", "c=3", "--rl", "d=4", "--sft", "e=5"]) == {
        "shared": ["a=1"], "sft": ["b=2", "c=3", "e=5"], "rl": ["d=4"]}


def test_embedded_test_split_with_own_training_rows_is_refused(tmp_path, capsys):
    rows = tmp_path / "mine.jsonl"
    rows.write_text("")
    assert main([f"embedded.root={tmp_path / 'embedded'}", f"data.train_files={rows}", "data.val_files=null",
                 f"worker.actor.model.model_path={tmp_path / 'model'}"]) == 2
    err = capsys.readouterr().err
    assert "data.test_files" in err and "is the embedded synthetic test split" in err
    assert not (tmp_path / "embedded").exists()


@pytest.mark.slow
def test_sft_then_rl_with_an_evaluation_after_each_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "embedded"
    results = run_pipeline([f"embedded.root={root}", *SHARED, *SFT, *RL])
    assert list(results) == ["base", "sft", "rl"]
    test_rows = (root / "data/test.jsonl").read_text().splitlines()
    folders = {"base": "embedded_sft_qwen2_5_vl/base", "sft": "embedded_sft_qwen2_5_vl/sft",
               "rl": "embedded_qwen2_5_vl/rl"}
    for stage, metrics in results.items():
        folder = Path("outputs/eval") / folders[stage]
        records = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        assert len(records) == metrics["total"] == len(test_rows)
        assert metrics["accuracy"] == sum(record["correct"] for record in records) / len(records)
        assert json.loads((folder / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    sft_merged = Path("checkpoints/longrl/embedded_sft_qwen2_5_vl/global_step_3/actor/merged").resolve()
    assert Path(results["sft"]["config"]["model"]).resolve() == sft_merged
    rl_config = yaml.safe_load(Path("checkpoints/longrl/embedded_qwen2_5_vl/global_step_1/config.yaml").read_text())
    assert Path(rl_config["worker"]["actor"]["model"]["model_path"]).resolve() == sft_merged
    assert Path(results["rl"]["config"]["model"]).resolve() == \
        Path("checkpoints/longrl/embedded_qwen2_5_vl/global_step_1/actor/merged").resolve()
    out = capsys.readouterr().out
    summary = [line for line in out.splitlines() if line.startswith("test accuracy by stage: ")]
    assert summary == ["test accuracy by stage: " + ", ".join(
        f"{stage} {results[stage]['accuracy']:.3f}" for stage in ("base", "sft", "rl"))]
