"""The VILA scripts' smoke variants: each script, unchanged but for the sizes, runs one GRPO step of its tiny model
(NVILA-Lite's 3 x 3 projector fold, LongVILA's 2 x 2) in VILA's directory layout on local synthetic videos, through the
data layer, MR-SP (5 frames per video dealt over two CPU ranks, FSDP over both, the sharded prefill), the HF rollout,
the r1v reward and the update of the LLM (the scripts freeze the tower and the projector)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import VideoQADataset
from longrl.data.synthetic import generate_dataset
from longrl.models import get_adapter
from longrl.models.vila import build_tiny_vila

REPO = Path(__file__).resolve().parents[2]
FRAMES = 5
TINY = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1", "trainer.save_freq=-1",
        "trainer.logger=[file]", "trainer.val_before_train=false", "trainer.val_freq=-1",
        f"worker.rollout.num_video_frames={FRAMES}", "worker.actor.ulysses_size=2", "data.rollout_batch_size=2",
        "worker.actor.global_batch_size=2", "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "data.max_prompt_length=1024", "data.shuffle=false"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("vila_videos")
    generate_dataset(data, num=4, frames=8, seed=5)
    return data


@pytest.mark.parametrize("script, projector, frame_tokens", [("nvila_2b_video_grpo", "mlp_downsample_3x3_fix", 5),
                                                             ("longvila_7b_video_grpo", "mlp_downsample", 10)])
def test_vila_script_trains_one_step_with_sequence_parallelism(tiny_model_dir, videos, tmp_path, script, projector,
                                                              frame_tokens):
    model_dir = (tiny_model_dir("vila") if projector == "mlp_downsample_3x3_fix"
                 else build_tiny_vila(tmp_path / "tiny_longvila", seed=0, projector_type=projector))
    env = {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(model_dir),
           "TRAIN_FILES": str(videos / "train.jsonl"), "VAL_FILES": str(videos / "val.jsonl"), "N_GPUS_PER_NODE": "2"}
    run = tmp_path / "run"
    run.mkdir()
    result = subprocess.run(["bash", str(REPO / f"examples/{script}.sh"), str(videos), *TINY], cwd=run, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [metrics] = [json.loads(line) for line in
                 (run / f"outputs/logs/longrl/{script}/metrics.jsonl").read_text().splitlines()]
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics
    assert 0.0 <= metrics["critic/score/mean"] <= 1.0
    # Stage 1 on this rank: its share of the step's 2 videos x 5 frames, in one tower call; the frozen tower is not
    # run again for the log-prob passes or the update.
    assert metrics["mrsp/vision_tower_calls"] == 1 and metrics["mrsp/encoded_slices"] == FRAMES
    # The step's prompts are the data layer's prompts of the first two rows, each frame its tokens and a "\n".
    adapter = get_adapter("vila")
    processor = adapter.load_processor(model_dir)
    data = DataConfig(train_files=str(videos / "train.jsonl"), video_dir=str(videos), prompt_key="question",
                      video_key="video", format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"))
    dataset = VideoQADataset(data.train_files, data, RolloutConfig(num_video_frames=FRAMES), adapter, processor)
    assert processor.tokens_per_frame == frame_tokens
    prompts = [dataset[index]["inputs"]["input_ids"] for index in range(2)]
    assert all(int((ids == processor.video_token_id).sum()) == FRAMES * (frame_tokens - 1) for ids in prompts)
    assert metrics["prompt_length/mean"] == pytest.approx(np.mean([len(ids) for ids in prompts]))
