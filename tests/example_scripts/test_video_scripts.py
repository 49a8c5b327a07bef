"""The Qwen2.5-VL video and image scripts, one training step per distinct path: DAPO (its filter and overlong shaping)
on videos; the hour-long script's MR-SP, shared-prefix and frozen-tower settings; multi-image rows. The GRPO and
REINFORCE scripts are the DAPO script's command but for the algorithm (each algorithm's training is
tests/trainer/test_rl_trainer.py's)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrl.data.synthetic import generate_dataset

from script_runs import REPO, command, composed, run_script, script_env

pytestmark = pytest.mark.slow
# A reward that varies within a group on a random model, so DAPO's filter keeps some groups.
PARITY = ("REWARD_TYPE = 'sequential'\n\ndef compute_score(x):\n    even = float(len(x['response']) % 2 == 0)\n"
          "    return {'overall': even, 'accuracy': even}\n")
ALGORITHM_OVERRIDES = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1",
                       "trainer.save_freq=-1", "trainer.logger=[file]", "trainer.val_before_train=false",
                       "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
                       "worker.rollout.num_video_frames=4", "data.max_response_length=8",
                       "algorithm.overlong_buffer_len=2", "algorithm.max_try_make_batch=4",
                       f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]


def algorithm_arguments(tmp_path) -> list[str]:
    """The algorithm scripts' arguments: the video directory, then the overrides (the parity reward among them)."""
    return [str(tmp_path / "data"), *ALGORITHM_OVERRIDES,
            f"worker.reward.reward_function={tmp_path / 'parity.py'}:compute_score"]


def test_dapo_script_trains_one_step(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, num=10, frames=8, seed=4)
    (tmp_path / "parity.py").write_text(PARITY)
    env = script_env(tiny_model_dir("qwen2_5_vl"), data / "train.jsonl", data / "val.jsonl")
    [metrics] = run_script("qwen2_5_vl_3b_video_dapo", algorithm_arguments(tmp_path), env, tmp_path)
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics


def test_algorithm_scripts_are_the_dapo_command_but_for_the_algorithm(tmp_path):
    env = script_env(tmp_path / "model", tmp_path / "data/train.jsonl")  # no run: nothing is read
    commands = {algorithm: command(f"qwen2_5_vl_3b_video_{algorithm}", algorithm_arguments(tmp_path), env, tmp_path)
                for algorithm in ("grpo", "dapo", "reinforce")}
    assert commands["dapo"][:2] == ["-m", "longrl.trainer.main"]
    for algorithm, estimator in (("grpo", "grpo"), ("dapo", "grpo"), ("reinforce", "reinforce_plus_plus")):
        renamed = {"algorithm=dapo": f"algorithm={algorithm}",
                   "trainer.experiment_name=qwen2_5_vl_3b_video_dapo":
                       f"trainer.experiment_name=qwen2_5_vl_3b_video_{algorithm}"}
        assert set(renamed) <= set(commands["dapo"])
        assert commands[algorithm] == [renamed.get(arg, arg) for arg in commands["dapo"]]
        assert composed(commands[algorithm][2:])["algorithm"]["adv_estimator"] == estimator


def test_qwen3_vl_script_is_the_qwen2_5_vl_grpo_command_but_for_its_model(tmp_path):
    """The Qwen3-VL script runs the Qwen2.5-VL GRPO command with its own checkpoint and run name; the family's own
    paths are the adapter's tests (tests/models/test_qwen3_vl.py and its cases in the MR-SP, rollout, vLLM and merger
    tests)."""
    env = script_env(tmp_path / "model", tmp_path / "data/train.jsonl")  # no run: nothing is read
    qwen3_vl = command("qwen3_vl_4b_video_grpo", algorithm_arguments(tmp_path), env, tmp_path)
    qwen2_5_vl = command("qwen2_5_vl_3b_video_grpo", algorithm_arguments(tmp_path), env, tmp_path)
    renamed = {"trainer.experiment_name=qwen2_5_vl_3b_video_grpo": "trainer.experiment_name=qwen3_vl_4b_video_grpo"}
    assert set(renamed) <= set(qwen2_5_vl)
    assert qwen3_vl == [renamed.get(arg, arg) for arg in qwen2_5_vl]
    default = command("qwen3_vl_4b_video_grpo", algorithm_arguments(tmp_path),
                      {key: value for key, value in env.items() if key != "MODEL_PATH"}, tmp_path)
    assert composed(default[2:])["worker"]["actor"]["model"]["model_path"] == "Qwen/Qwen3-VL-4B-Instruct"


def test_hour_long_script_trains_one_step_with_sequence_parallelism(tiny_model_dir, tmp_path):
    """The 3,600-frame script unchanged but for the sizes: its MR-SP, shared-prefix and frozen-tower settings, its
    reward and format prompt (found from a directory other than the repo's) run on two CPU ranks (ulysses_size 2 over
    a world of 2): one GRPO step of the tiny model on 8-frame videos."""
    data = tmp_path / "data"
    generate_dataset(data, num=4, frames=8, seed=5)
    env = script_env(tiny_model_dir("qwen2_5_vl"), data / "train.jsonl", data / "val.jsonl", gpus=2)
    overrides = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1", "trainer.save_freq=-1",
                 "trainer.logger=[file]", "trainer.val_before_train=false", "trainer.val_freq=-1",
                 "worker.rollout.num_video_frames=8", "worker.rollout.max_video_frames=8",
                 "worker.actor.ulysses_size=2", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
                 "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=2",
                 "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8"]
    [metrics] = run_script("qwen2_5_vl_3b_video_1h", [str(data), *overrides], env, tmp_path)
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
    env = script_env(tiny_model_dir("qwen2_5_vl"), tmp_path / "rows.jsonl", gpus=2)
    overrides = ["trainer.max_steps=1", "trainer.save_freq=-1", "trainer.logger=[file]",
                 "trainer.val_before_train=false", "trainer.val_freq=-1", "worker.actor.ulysses_size=2",
                 "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
                 "data.max_response_length=8", "data.max_pixels=12544", "data.min_pixels=784"]
    [metrics] = run_script("qwen2_5_vl_3b_image_grpo", [str(images), *overrides], env, tmp_path)
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics
    assert metrics["mrsp/encoded_slices"] > 0  # the images went through MR-SP's tower, as slices
