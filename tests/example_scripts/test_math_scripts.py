"""The math example scripts' smoke variant: the Qwen3 script, unchanged, runs one GRPO step of its tiny model on local
math rows (text only) through the real trainer, reward and format prompt; the Qwen2.5 script is the same command
but for its name (it trains over two Ray nodes in tests/launcher_scripts)."""

from __future__ import annotations

import json

import pytest

from script_runs import command, composed, run_script, script_env

ROWS = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
TINY = ["trainer.max_steps=1", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "trainer.logger=[file]", "trainer.save_freq=-1", "trainer.val_before_train=false", "trainer.val_freq=-1"]

pytestmark = pytest.mark.slow


@pytest.fixture
def rows(tmp_path):
    rows = tmp_path / "math.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return rows


def test_qwen3_math_script_runs_one_step(tiny_model_dir, rows, tmp_path):
    env = script_env(tiny_model_dir("qwen3"), rows)
    steps = run_script("qwen3_4b_math_grpo", [*TINY, f"trainer.save_checkpoint_path={tmp_path / 'ckpt'}"], env,
                       tmp_path)
    assert [step["step"] for step in steps] == [1]
    assert "actor/pg_loss" in steps[0] and 0.0 <= steps[0]["critic/score/mean"] <= 1.0


def test_math_scripts_are_one_command_but_for_the_run_name(rows, tmp_path):
    env = script_env(tmp_path / "model", rows)  # no run: nothing is read
    qwen3, qwen2 = (command(script, TINY, env, tmp_path) for script in ("qwen3_4b_math_grpo", "qwen2_5_3b_math_grpo"))
    assert qwen3[:2] == ["-m", "longrl.trainer.main"] and "trainer.experiment_name=qwen3_4b_math_grpo" in qwen3
    assert qwen2 == [arg.replace("=qwen3_4b_math_grpo", "=qwen2_5_3b_math_grpo") for arg in qwen3]
    assert composed(qwen2[2:])["trainer"]["experiment_name"] == "qwen2_5_3b_math_grpo"
