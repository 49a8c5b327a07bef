"""End-of-run curves: one point per logged step, drawn from the metrics file, numbers written beside the PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from longrl.trainer.curves import plot_curves, plot_stage_accuracy, read_metrics

RECORDS = [
    {"step": 0, "val/reward": 0.1, "val/accuracy": 0.0},
    {"step": 1, "critic/score/mean": 0.5, "critic/accuracy/mean": 0.25, "response_length/mean": 10.0,
     "actor/entropy": 2.0, "timing_s/step": 3.0},
    {"step": 2, "critic/score/mean": 0.0, "critic/accuracy/mean": 0.5, "response_length/mean": 11.0,
     "actor/entropy": None, "timing_s/step": 2.5},
    {"step": 3, "critic/score/mean": 9.0, "critic/accuracy/mean": 9.0, "response_length/mean": 9.0,
     "actor/entropy": 9.0, "timing_s/step": 9.0},  # crashed after this line; step 3 is logged again on resume
    {"step": 3, "critic/score/mean": 1.0, "critic/accuracy/mean": 0.75, "response_length/mean": 12.0,
     "actor/entropy": 1.5, "timing_s/step": 2.0},
    {"step": 4, "reward/failed_step": 1.0},
    {"step": 5, "critic/score/mean": 0.5, "critic/accuracy/mean": 1.0, "response_length/mean": 8.0,
     "actor/entropy": 1.0, "timing_s/step": 2.0, "val/reward": 0.6, "val/accuracy": 0.5},
]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_rl_curves_hold_one_point_per_logged_step(tmp_path):
    metrics = _write(tmp_path / "metrics.jsonl", RECORDS)
    paths = plot_curves(metrics, tmp_path / "curves")
    assert [p.name for p in paths] == ["reward.png", "accuracy.png", "response_length.png", "entropy.png",
                                       "step_time.png"]  # no KL logged (disable_kl), no SFT loss
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (640, 360)
    data = json.loads((tmp_path / "curves/curves.json").read_text())
    assert data["reward"]["series"] == {
        "critic/score/mean": {"steps": [1, 2, 3, 5], "values": [0.5, 0.0, 1.0, 0.5]},
        "val/reward": {"steps": [0, 5], "values": [0.1, 0.6]},
    }
    assert data["accuracy"]["series"]["critic/accuracy/mean"]["values"] == [0.25, 0.5, 0.75, 1.0]
    assert data["entropy"]["series"] == {"actor/entropy": {"steps": [1, 3, 5], "values": [2.0, 1.5, 1.0]}}
    assert data["step_time"]["series"]["timing_s/step"]["steps"] == [1, 2, 3, 5]
    assert data["response_length"]["png"] == "response_length.png"


def test_sft_curves_and_a_reward_kl_series(tmp_path):
    records = [{"step": 0, "val/sft_loss": 3.0}] + [
        {"step": s, "sft/loss": 3.0 / s, "timing_s/step": 1.0, "critic/kl": 0.01 * s} for s in (1, 2)]
    paths = plot_curves(_write(tmp_path / "m.jsonl", records), tmp_path / "out")
    assert [p.name for p in paths] == ["kl.png", "loss.png", "step_time.png"]
    data = json.loads((tmp_path / "out/curves.json").read_text())
    assert data["loss"]["series"] == {"sft/loss": {"steps": [1, 2], "values": [3.0, 1.5]},
                                      "val/sft_loss": {"steps": [0], "values": [3.0]}}
    assert data["kl"]["series"]["critic/kl"]["values"] == [0.01, 0.02]


def test_a_broken_metrics_line_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2,\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2 is not a JSON line"):
        read_metrics(path)


def test_stage_accuracy_bars(tmp_path):
    path = plot_stage_accuracy({"base": 0.25, "sft": 0.5, "rl": 0.75}, tmp_path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (480, 360)
    assert json.loads((tmp_path / "test_accuracy.json").read_text()) == {"stages": ["base", "sft", "rl"],
                                                                         "accuracy": [0.25, 0.5, 0.75]}
