"""The Flow-GRPO scripts' smoke variants: each script, unchanged but for the sizes, runs one step on a tiny pipeline
made by ``longrl.flow.tiny`` (real SD3 / Wan transformers, CLIP / T5 / UMT5 encoders, local tokenizers, and a tiny
AutoencoderKL / AutoencoderKLWan, so the media are VAE-decoded latents as with a released pipeline) and the example
prompt file, through the trainer, the Ray worker, LoRA, gradient checkpointing, guidance and the composition reward the
scripts set."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from longrl.flow.tiny import build_tiny_pipeline

from script_runs import run_to_exit

REPO = Path(__file__).resolve().parents[2]
TINY = ["worker.rollout.height=8", "worker.rollout.width=8", "worker.rollout.num_steps=3", "worker.rollout.n=2",
        "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=4",
        "worker.actor.lora.rank=4", "worker.actor.lora.alpha=8", "trainer.max_steps=1", "trainer.save_freq=-1",
        "trainer.logger=[file]", "trainer.val_before_train=false"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script, family, frames", [("sd3_image_grpo", "sd3", 1), ("wan_video_grpo", "wan", 5)])
def test_flow_script_runs_one_step(tmp_path, script, family, frames):
    model_dir = build_tiny_pipeline(tmp_path / f"tiny-{family}", family, vae=True)
    env = {**os.environ, "MODEL_PATH": str(model_dir), "N_GPUS_PER_NODE": "1", "PYTHON": sys.executable}
    prompts = REPO / "examples/prompts/geneval_colors.jsonl"
    done = run_to_exit(["bash", str(REPO / "examples" / f"{script}.sh"), str(prompts), *TINY,
                        f"worker.rollout.num_frames={frames}", f"trainer.save_checkpoint_path={tmp_path / 'ckpt'}"],
                       env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [step] = [json.loads(line) for line in
              (tmp_path / "outputs/logs/longrl_flow" / script / "metrics.jsonl").read_text().splitlines()]
    assert step["step"] == 1
    assert 0.0 <= step["critic/score/min"] <= step["critic/score/mean"] <= step["critic/score/max"] <= 1.0
    assert 0.0 <= step["reward/colour"] <= 1.0
    assert step["actor/ppo_kl"] == pytest.approx(0.0, abs=1e-6)  # one update starts at the policy that sampled
    assert step["actor/kl_loss"] == pytest.approx(0.0, abs=1e-9)  # LoRA starts as the identity: policy == base
    assert step["actor/lr"] == pytest.approx(3e-4 if family == "sd3" else 1e-4)
