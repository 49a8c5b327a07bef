"""The two-stage pipeline: CoT-SFT, then RL from the merged SFT model, with the test split evaluated after each."""

import json
import re
from pathlib import Path

import pytest
import yaml

from longrl.sft.pipeline import main, run_pipeline, split_stage_arguments

REPO = Path(__file__).resolve().parents[2]
# step N/T | elapsed H:MM:SS | eta H:MM:SS | headline numbers | S.s s/step
PROGRESS = re.compile(r"step (\d+)/(\d+) \| elapsed \d+:\d\d:\d\d( \| eta \d+:\d\d:\d\d)? \| (.+?)"
                      r"( \| \d+\.\d s/step)?")
SHARED = ["quickstart.num_videos=10", "quickstart.frames=8", "worker.rollout.num_video_frames=4",
          "trainer.logger=[console,file]",
          f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
SFT = ["--sft", "trainer.max_steps=3", "data.rollout_batch_size=4", "worker.actor.global_batch_size=4",
       "worker.actor.micro_batch_size_per_device_for_update=4"]
RL = ["--rl", "trainer.max_steps=1", "trainer.save_freq=1", "data.rollout_batch_size=2",
      "worker.actor.global_batch_size=2", "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=4"]


def test_arguments_are_split_by_stage_markers():
    assert split_stage_arguments(["a=1", "--sft", "b=2", "c=3", "--rl", "d=4", "--sft", "e=5"]) == {
        "shared": ["a=1"], "sft": ["b=2", "c=3", "e=5"], "rl": ["d=4"]}


def test_quickstart_test_split_with_own_training_rows_is_refused(tmp_path, capsys):
    rows = tmp_path / "mine.jsonl"
    rows.write_text("")
    assert main([f"quickstart.root={tmp_path / 'quickstart'}", f"data.train_files={rows}", "data.val_files=null",
                 f"worker.actor.model.model_path={tmp_path / 'model'}"]) == 2
    err = capsys.readouterr().err
    assert "data.test_files" in err and "is the quickstart's synthetic test split" in err
    assert not (tmp_path / "quickstart").exists()


@pytest.mark.slow
def test_sft_then_rl_with_an_evaluation_after_each_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "quickstart"
    results = run_pipeline([f"quickstart.root={root}", *SHARED, *SFT, *RL])
    assert list(results) == ["base", "sft", "rl", "control"]
    test_rows = (root / "data/test.jsonl").read_text().splitlines()
    folders = {"base": "quickstart_sft_qwen2_5_vl/base", "sft": "quickstart_sft_qwen2_5_vl/sft",
               "rl": "quickstart_qwen2_5_vl/rl", "control": "quickstart_qwen2_5_vl/rl_constant_frames"}
    for stage, metrics in results.items():
        folder = Path("outputs/eval") / folders[stage]
        records = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        assert len(records) == metrics["total"] == len(test_rows)
        assert metrics["accuracy"] == sum(record["correct"] for record in records) / len(records)
        assert json.loads((folder / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    sft_merged = Path("checkpoints/longrl/quickstart_sft_qwen2_5_vl/global_step_3/actor/huggingface").resolve()
    assert Path(results["sft"]["config"]["model"]).resolve() == sft_merged
    rl_config = yaml.safe_load(Path("checkpoints/longrl/quickstart_qwen2_5_vl/global_step_1/config.yaml").read_text())
    assert Path(rl_config["worker"]["actor"]["model"]["model_path"]).resolve() == sft_merged
    assert Path(results["rl"]["config"]["model"]).resolve() == \
        Path("checkpoints/longrl/quickstart_qwen2_5_vl/global_step_1/actor/huggingface").resolve()
    assert results["control"]["config"]["model"] == results["rl"]["config"]["model"]
    assert results["control"]["config"]["constant_frames"] and not results["rl"]["config"]["constant_frames"]
    assert results["control"]["chance"] == 0.25  # majority_colour: four options per row
    out = capsys.readouterr().out
    summary = [line for line in out.splitlines() if line.startswith("test accuracy by stage: ")]
    assert summary == ["test accuracy by stage: " + ", ".join(
        f"{stage} {results[stage]['accuracy']:.3f}" for stage in ("base", "sft", "rl"))]
    assert (f"control: the RL model with every frame replaced by its video's median frame scores "
            f"{results['control']['accuracy']:.3f} (chance 0.250)") in out
    # the console: one short line per step (0 = validation before training), SFT's 3 steps then RL's 1
    progress = [PROGRESS.fullmatch(line) for line in out.splitlines() if line.startswith("step ")]
    assert all(progress) and [(m[1], m[2]) for m in progress] == [("0", "3"), ("1", "3"), ("2", "3"), ("3", "3"),
                                                                  ("0", "1"), ("1", "1")]
    assert [bool(m[3]) for m in progress] == [False, True, True, True, False, True]  # an ETA once a step ran
    assert progress[0][4].startswith("val_loss ") and progress[3][4].startswith("loss ")
    assert "val_loss " in progress[3][4] and progress[4][4].startswith("val_reward ")
    assert progress[5][4].startswith("reward ") and " acc " in progress[5][4] and " len " in progress[5][4]
    assert max(len(m[0]) for m in progress) < 160
    # the curves of each stage, one point per step, and the test accuracy per stage
    sft_curves = json.loads(Path("outputs/logs/longrl/quickstart_sft_qwen2_5_vl/curves/curves.json").read_text())
    assert sft_curves["loss"]["series"]["sft/loss"]["steps"] == [1, 2, 3]
    rl_log = Path("outputs/logs/longrl/quickstart_qwen2_5_vl")
    rl_metrics = json.loads((rl_log / "metrics.jsonl").read_text().splitlines()[-1])
    rl_curves = json.loads((rl_log / "curves/curves.json").read_text())
    assert rl_curves["reward"]["series"]["critic/score/mean"] == {"steps": [1],
                                                                  "values": [rl_metrics["critic/score/mean"]]}
    assert f"curve: {rl_log / 'curves/reward.png'}" in out and (rl_log / "curves/reward.png").is_file()
    assert f"curve: {rl_log / 'test_accuracy.png'}" in out
    assert json.loads((rl_log / "test_accuracy.json").read_text()) == {
        "stages": ["base", "sft", "rl"], "accuracy": [results[stage]["accuracy"] for stage in ("base", "sft", "rl")]}
