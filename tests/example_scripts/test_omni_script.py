"""The Qwen2.5-Omni script's smoke variant: the script, unchanged, runs one GRPO step of the tiny Omni thinker on local
rows whose mp4s carry an audio track (one row names its own audio file instead), through the data layer, MR-SP
(video slices and audio chunks over two CPU ranks, FSDP over both), the HF rollout, the r1v reward and the update."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import VideoQADataset
from longrl.models import get_adapter

from audio_video import noise, tone, write_audio, write_video
from script_runs import REPO, run_script, script_env

SCRIPT = "qwen2_5_omni_3b_grpo"
TINY = ["trainer.max_steps=1", "trainer.save_freq=-1", "trainer.logger=[file]", "trainer.val_before_train=false",
        "trainer.val_freq=-1", "worker.actor.ulysses_size=2", "data.rollout_batch_size=2",
        "worker.actor.global_batch_size=2", "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "worker.rollout.num_video_frames=4",
        "data.max_response_length=8", "data.max_pixels=12544", "data.shuffle=false"]

pytestmark = pytest.mark.slow


def test_omni_script_trains_one_step_on_videos_with_sound(tiny_model_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(4)
    sounds = (tone(1.0, 440.0), noise(0.7, seed=5))
    for index, sound in enumerate(sounds):
        write_video(videos / f"{index}.mp4", rng.integers(0, 256, (8, 56, 56, 3), dtype=np.uint8), 4, sound)
    write_audio(videos / "voice.m4a", tone(0.5, 330.0))
    rows = [{"problem": "Is the sound a pure tone? A. yes B. no", "answer": "AB"[index % 2],
             "videos": f"{index % 2}.mp4"} for index in range(3)]
    rows.append({"problem": "Is the voice a pure tone? A. yes B. no", "answer": "A", "videos": "1.mp4",
                 "audio": "voice.m4a"})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    model_dir = tiny_model_dir("qwen2_5_omni")
    env = script_env(model_dir, tmp_path / "rows.jsonl", gpus=2)
    [metrics] = run_script(SCRIPT, [str(videos), *TINY], env, tmp_path)
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics
    assert 0.0 <= metrics["critic/score/mean"] <= 1.0
    assert metrics["mrsp/encoded_slices"] > 0
    # The step's prompts are the first two rows' with their audio tokens: the data layer's own prompts of those rows.
    adapter = get_adapter("qwen2_5_omni")
    data = DataConfig(train_files=str(tmp_path / "rows.jsonl"), video_dir=str(videos), use_audio=True,
                      max_pixels=12544, format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"))
    dataset = VideoQADataset(data.train_files, data, RolloutConfig(num_video_frames=4), adapter,
                             adapter.load_processor(model_dir))
    audio_token = dataset.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    lengths = [int(dataset[index]["inputs"]["input_ids"].shape[-1]) for index in range(2)]
    assert all(int((dataset[index]["inputs"]["input_ids"] == audio_token).sum()) > 0 for index in range(2))
    assert metrics["prompt_length/mean"] == pytest.approx(np.mean(lengths))
