"""The math example scripts' smoke variant: each script, unchanged, runs one GRPO step of its tiny model on local math
rows (text only) through the real trainer, reward and format prompt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
TINY = ["trainer.max_steps=1", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "trainer.logger=[file]", "trainer.save_freq=-1", "trainer.val_before_train=false", "trainer.val_freq=-1"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script, family", [("qwen3_4b_math_grpo", "qwen3"), ("qwen2_5_3b_math_grpo", "qwen2")])
def test_math_script_runs_one_step(script, family, tiny_model_dir, tmp_path):
    rows = tmp_path / "math.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    env = {**os.environ, "MODEL_PATH": str(tiny_model_dir(family)), "TRAIN_FILES": str(rows), "VAL_FILES": str(rows),
           "N_GPUS_PER_NODE": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "examples" / f"{script}.sh"), *TINY,
                           f"trainer.save_checkpoint_path={tmp_path / 'ckpt'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [json.loads(line) for line in
             (tmp_path / "outputs/logs/longrl" / script / "metrics.jsonl").read_text().splitlines()]
    assert [step["step"] for step in steps] == [1]
    assert "actor/pg_loss" in steps[0] and 0.0 <= steps[0]["critic/score/mean"] <= 1.0
