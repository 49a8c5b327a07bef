"""The VILA scripts' smoke variants. The LongVILA script, unchanged but for the sizes, runs one GRPO step of its tiny
model (LongVILA's 2 x 2 projector fold) in VILA's directory layout on local synthetic videos, through the data layer,
MR-SP (5 frames per video dealt over two CPU ranks, FSDP over both, the sharded prefill), the HF rollout, the r1v reward
and the update of the LLM (the scripts freeze the tower and the projector). The NVILA script composes the same run but
for its model and name; each script's model gives the data layer's prompts its own frame tokens (NVILA-Lite's 3 x 3
fold; NVILA through MR-SP is tests/mrsp/test_vila_sp.py's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import VideoQADataset
from longrl.data.synthetic import generate_dataset
from longrl.models import get_adapter
from longrl.models.vila import build_tiny_vila

from script_runs import REPO, command, composed, run_script, script_env, without

FRAMES = 5
TINY = ["data.prompt_key=question", "data.video_key=video", "trainer.max_steps=1", "trainer.save_freq=-1",
        "trainer.logger=[file]", "trainer.val_before_train=false", "trainer.val_freq=-1",
        f"worker.rollout.num_video_frames={FRAMES}", "worker.actor.ulysses_size=2", "data.rollout_batch_size=2",
        "worker.actor.global_batch_size=2", "worker.rollout.n=2", "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "data.max_prompt_length=1024", "data.shuffle=false"]
SCRIPTS = {"nvila": "nvila_2b_video_grpo", "longvila": "longvila_7b_video_grpo"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("vila_videos")
    generate_dataset(data, num=4, frames=8, seed=5)
    return data


@pytest.fixture(scope="module")
def model_dirs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    longvila = build_tiny_vila(tmp_path_factory.mktemp("tiny_longvila"), seed=0, projector_type="mlp_downsample")
    return {"nvila": tiny_model_dir("vila"), "longvila": longvila}


def prompts(model_dir: Path, videos: Path) -> tuple[object, list]:
    """The processor of ``model_dir`` and the data layer's prompt ids of the first two rows."""
    adapter = get_adapter("vila")
    processor = adapter.load_processor(model_dir)
    data = DataConfig(train_files=str(videos / "train.jsonl"), video_dir=str(videos), prompt_key="question",
                      video_key="video", format_prompt=str(REPO / "examples/format_prompt/r1v.jinja"))
    dataset = VideoQADataset(data.train_files, data, RolloutConfig(num_video_frames=FRAMES), adapter, processor)
    return processor, [dataset[index]["inputs"]["input_ids"] for index in range(2)]


def test_longvila_script_trains_one_step_with_sequence_parallelism(model_dirs, videos, tmp_path):
    env = script_env(model_dirs["longvila"], videos / "train.jsonl", videos / "val.jsonl", gpus=2)
    [metrics] = run_script(SCRIPTS["longvila"], [str(videos), *TINY], env, tmp_path)
    assert metrics["step"] == 1 and "actor/pg_loss" in metrics
    assert 0.0 <= metrics["critic/score/mean"] <= 1.0
    # Stage 1 on this rank: its share of the step's 2 videos x 5 frames, in one tower call; the frozen tower is not
    # run again for the log-prob passes or the update.
    assert metrics["mrsp/vision_tower_calls"] == 1 and metrics["mrsp/encoded_slices"] == FRAMES
    # The step's prompts are the data layer's prompts of the first two rows.
    _, ids = prompts(model_dirs["longvila"], videos)
    assert metrics["prompt_length/mean"] == pytest.approx(np.mean([len(row) for row in ids]))


def test_nvila_script_composes_the_longvila_run_but_for_its_model_and_name(model_dirs, videos, tmp_path):
    trees = {}
    for name, script in SCRIPTS.items():
        env = script_env(model_dirs[name], videos / "train.jsonl", videos / "val.jsonl", gpus=2)
        argv = command(script, [str(videos), *TINY], env, tmp_path)
        assert argv[:2] == ["-m", "longrl.trainer.main"]
        trees[name] = composed(argv[2:])
    assert trees["nvila"]["trainer"]["experiment_name"] == SCRIPTS["nvila"]
    assert trees["nvila"]["worker"]["actor"]["model"]["model_path"] == str(model_dirs["nvila"])
    names = ("trainer.experiment_name", "worker.actor.model.model_path")
    assert without(trees["nvila"], *names) == without(trees["longvila"], *names)


@pytest.mark.parametrize("model, frame_tokens", [("nvila", 5), ("longvila", 10)])
def test_each_vila_model_gives_its_frames_their_tokens_and_a_newline(model_dirs, videos, model, frame_tokens):
    processor, ids = prompts(model_dirs[model], videos)
    assert processor.tokens_per_frame == frame_tokens
    assert all(int((row == processor.video_token_id).sum()) == FRAMES * (frame_tokens - 1) for row in ids)
