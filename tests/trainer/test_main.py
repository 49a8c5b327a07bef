"""The main entry point on the embedded default: artefacts generated once, one sample printed; config errors."""

from pathlib import Path

from longrl.config.loader import load_config
from longrl.trainer.embedded import prepare_embedded_default
from longrl.trainer.main import main

SMALL = ["embedded.num_videos=4", "embedded.frames=8", "worker.rollout.num_video_frames=4"]


def test_main_generates_the_embedded_default_then_reuses_it(tmp_path: Path, capsys):
    root = tmp_path / "embedded"
    assert main([f"embedded.root={root}", *SMALL]) == 0
    out = capsys.readouterr().out
    assert f"generated synthetic long-video dataset (4 videos x 8 frames): {root / 'data'}" in out
    assert "generated tiny random qwen2_5_vl model" in out
    assert sorted(p.name for p in (root / "data").glob("*.jsonl")) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    assert (root / "tiny-qwen2_5_vl" / "config.json").is_file()
    assert "training rows: 2 from" in out
    assert "video frames (T, H, W, C): (4, 112, 112, 3)" in out
    assert "video_grid_thw: (1, 3)" in out and "pixel_values_videos: (128, 1176)" in out
    assert "<|vision_start|><|video_pad|>x32<|vision_end|>" in out
    assert out.rstrip().endswith("<|im_start|>assistant")
    assert not list(root.glob(".*")), "no staging directory is left behind"

    assert main([f"embedded.root={root}", *SMALL]) == 0
    assert "generated" not in capsys.readouterr().out


def test_nothing_embedded_is_generated_for_paths_outside_the_root(tmp_path: Path):
    cfg = load_config([f"embedded.root={tmp_path / 'embedded'}", f"data.train_files={tmp_path / 'mine.jsonl'}",
                       "data.val_files=null", f"worker.actor.model.model_path={tmp_path / 'model'}"])
    assert prepare_embedded_default(cfg) == []
    assert not (tmp_path / "embedded").exists()


def test_config_error_exits_2_with_the_message(capsys):
    assert main(["worker.rollout.temprature=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: unknown config key 'worker.rollout.temprature'")
    assert "Did you mean 'worker.rollout.temperature'?" in err
