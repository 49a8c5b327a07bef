"""Each per-algorithm example script runs one training step of its algorithm on the tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longrl.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algorithm, estimator", [("grpo", "grpo"), ("dapo", "grpo"), ("reinforce", "reinforce_plus_plus")])
def test_example_script_trains_one_step(tiny_model_dir, tmp_path, algorithm, estimator):
    data = tmp_path / "data"
    generate_dataset(data, num=10, frames=8, seed=4)
    reward = tmp_path / "parity.py"  # varies within a group on a random model, so DAPO's filter keeps some groups
    reward.write_text("REWARD_TYPE = 'sequential'\n\ndef compute_score(x):\n    even = float(len(x['response']) % 2 == 0)\n"
                      "    return {'overall': even, 'accuracy': even}\n")
    env = {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(tiny_model_dir("qwen2_5_vl")),
           "TRAIN_FILES": str(data / "train.jsonl"), "VAL_FILES": str(data / "val.jsonl"), "N_GPUS_PER_NODE": "1"}
    script = REPO / f"examples/qwen2_5_vl_3b_video_{algorithm}.sh"
    overrides = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1", "trainer.save_freq=-1", "trainer.logger=[file]", "trainer.val_before_train=false",
                 "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
                 "worker.rollout.num_video_frames=4", "data.max_response_length=8", "algorithm.overlong_buffer_len=2",
                 "algorithm.max_try_make_batch=4", f"worker.reward.reward_function={reward}:compute_score",
                 f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
    result = subprocess.run(["bash", str(script), str(data), *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [metrics] = [json.loads(line) for line in
                 (tmp_path / f"outputs/logs/longrl/qwen2_5_vl_3b_video_{algorithm}/metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics


def test_hour_long_script_trains_one_step_with_sequence_parallelism(tiny_model_dir, tmp_path):
    """The 3,600-frame script unchanged but for the sizes: its MR-SP, shared-prefix and frozen-tower settings, its
    reward and format prompt (found from a directory other than the repo's) run on two CPU ranks (ulysses_size 2 over
    a world of 2): one GRPO step of the tiny model on 8-frame videos."""
    data = tmp_path / "data"
    generate_dataset(data, num=4, frames=8, seed=5)
    env = {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(tiny_model_dir("qwen2_5_vl")),
           "TRAIN_FILES": str(data / "train.jsonl"), "VAL_FILES": str(data / "val.jsonl"), "N_GPUS_PER_NODE": "2"}
    overrides = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1", "trainer.save_freq=-1",
                 "trainer.logger=[file]", "trainer.val_before_train=false", "trainer.val_freq=-1",
                 "worker.rollout.num_video_frames=8", "worker.rollout.max_video_frames=8",
                 "worker.actor.ulysses_size=2", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
                 "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=2",
                 "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8"]
    result = subprocess.run(["bash", str(REPO / "examples/qwen2_5_vl_3b_video_1h.sh"), str(data), *overrides],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [metrics] = [json.loads(line) for line in
                 (tmp_path / "outputs/logs/longrl/qwen2_5_vl_3b_video_1h/metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics


def test_image_script_trains_one_step_on_multi_image_rows(tiny_model_dir, tmp_path):
    """The image script unchanged but for the sizes: rows of one or two PNG images go through the data layer, MR-SP
    encoding (each image one slice, over two CPU ranks), the HF rollout, the r1v reward and one GRPO update."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(9)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (56, 56 + 28 * index, 3), dtype=np.uint8)).save(images / f"{index}.png")
    rows = [{"problem": "Which picture is the widest? A. first B. second", "answer": "B",
             "images": [f"{index % 3}.png", f"{(index + 1) % 3}.png"][: 1 + index % 2]} for index in range(4)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(tiny_model_dir("qwen2_5_vl")),
           "TRAIN_FILES": str(tmp_path / "rows.jsonl"), "VAL_FILES": str(tmp_path / "rows.jsonl"),
           "N_GPUS_PER_NODE": "2"}
    overrides = ["trainer.max_steps=1", "trainer.save_freq=-1", "trainer.logger=[file]",
                 "trainer.val_before_train=false", "trainer.val_freq=-1", "worker.actor.ulysses_size=2",
                 "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
                 "data.max_response_length=8", "data.max_pixels=12544", "data.min_pixels=784"]
    result = subprocess.run(["bash", str(REPO / "examples/qwen2_5_vl_3b_image_grpo.sh"), str(images), *overrides],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [metrics] = [json.loads(line) for line in
                 (tmp_path / "outputs/logs/longrl/qwen2_5_vl_3b_image_grpo/metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics
    assert metrics["mrsp/encoded_slices"] > 0  # the images went through MR-SP's tower, as slices
