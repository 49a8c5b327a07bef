"""The CoT-SFT stage end to end on synthetic videos: the loss falls, the model learns the target format, MR-SP over 2
ranks equals one rank, and a resumed run continues exactly."""

import json
import re
from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file

from longrl.config.loader import load_config
from longrl.data.synthetic import generate_dataset
from longrl.sft.main import run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TARGET_FORMAT = re.compile(r"^<think>[^<]+</think><answer>[A-H]</answer>$")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    generate_dataset(root / "data", num=12, frames=8, seed=3, tasks=("majority_colour",))  # short targets
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield root, tiny_model_dir("qwen2_5_vl")
    ray.shutdown()


def _cfg(root: Path, model_dir: Path, name: str, *extra: str):
    return load_config([
        f"data.train_files={root / 'data/train.jsonl'}", f"data.val_files={root / 'data/val.jsonl'}",
        "data.video_dir=null", f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}",
        f"worker.actor.model.model_path={model_dir}", "worker.rollout.num_video_frames=4",
        "data.rollout_batch_size=4", "worker.actor.global_batch_size=4",
        "worker.actor.micro_batch_size_per_device_for_update=2", f"trainer.save_checkpoint_path={root / name}",
        f"trainer.experiment_name={name}", "trainer.logger=[file]", *extra], config_name="sft")


def _metrics(name: str) -> list[dict]:
    path = Path("outputs/logs/longrl") / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(("timing_s/", "perf/"))}


def test_loss_falls_and_greedy_generation_has_the_target_format(setup, monkeypatch, tmp_path):
    """Overfit the 8 training rows (two batches, 40 epochs): the training and validation losses fall, and greedy
    generation from the merged model writes <think>...</think><answer>X</answer> for the training prompts."""
    from longrl.data.dataset import VideoQADataset
    from longrl.models import get_adapter

    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    summary, merged = run(_cfg(root, model_dir, "overfit", "trainer.total_epochs=40", "data.shuffle=false",
                               "worker.actor.optim.lr=3e-3", "worker.actor.optim.lr_warmup_steps=2"))
    losses = [m["sft/loss"] for m in _metrics("overfit") if "sft/loss" in m]
    assert len(losses) == 80
    curves = Path("outputs/logs/longrl/overfit/curves")  # drawn at the end of the run: one point per step
    loss_curve = json.loads((curves / "curves.json").read_text())["loss"]["series"]
    assert loss_curve["sft/loss"] == {"steps": list(range(1, 81)), "values": losses}
    val = loss_curve["val/sft_loss"]  # before training, at val_freq=40 and after the last step
    assert val["steps"] == [0, 40, 80]
    assert val["values"][0] == summary["before"]["val/sft_loss"]
    assert val["values"][-1] == summary["after"]["val/sft_loss"]
    assert sorted(p.name for p in curves.glob("*.png")) == ["loss.png", "step_time.png"]
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses
    assert summary["after"]["val/sft_loss"] < summary["before"]["val/sft_loss"]

    cfg = _cfg(root, model_dir, "overfit")
    adapter = get_adapter("qwen2_5_vl")
    processor = adapter.load_processor(merged)
    dataset = VideoQADataset(cfg.data.train_files, cfg.data, cfg.worker.rollout, adapter, processor)
    model = adapter.load_model(merged).eval()  # with the published Qwen-VL position rule, as in training
    seen = [dataset[i] for i in range(8)]  # the two full batches (no shuffling); the incomplete third is dropped
    for sample in seen:
        inputs = {key: value.unsqueeze(0) if key in ("input_ids", "attention_mask", "mm_token_type_ids") else value
                  for key, value in sample["inputs"].items()}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=320, do_sample=False)
        text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert TARGET_FORMAT.match(text.strip()), text


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen_tower", "trained_tower"])
def test_ulysses_2_on_2_ranks_matches_one_rank(setup, monkeypatch, tmp_path, freeze):
    """SFT with MR-SP over 2 gloo ranks (one data-parallel group) has the single-rank loss, grad norm and
    validation loss at every step."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    common = ("trainer.max_steps=2", f"worker.actor.model.freeze_vision_tower={str(freeze).lower()}")
    run(_cfg(root, model_dir, f"sft_sp1_{freeze}", *common))
    run(_cfg(root, model_dir, f"sft_sp2_{freeze}", "worker.actor.ulysses_size=2", "trainer.n_gpus_per_node=2",
             *common))
    single, sharded = _metrics(f"sft_sp1_{freeze}"), _metrics(f"sft_sp2_{freeze}")
    assert [m["step"] for m in single] == [m["step"] for m in sharded] == [0, 1, 2]
    for one, two in zip(single, sharded):
        keys = [k for k in _deterministic(one) if not k.startswith("mrsp/")]
        assert keys == [k for k in _deterministic(two) if not k.startswith("mrsp/")]
        for key in keys:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), (one["step"], key)
    # Each rank of the SP group encodes half of the step's temporal slices (4 rows x 4 frames = 8 slices).
    assert [m["mrsp/encoded_slices"] for m in sharded[1:]] == [4.0, 4.0]
    assert [m["mrsp/encoded_slices"] for m in single[1:]] == [8.0, 8.0]


def test_resume_continues_exactly(setup, monkeypatch, tmp_path):
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    # A constant schedule: max_steps=2 (to stop early) would otherwise give the first half another lr schedule.
    common = ("trainer.save_freq=2", "worker.actor.optim.lr_scheduler_type=constant")
    run(_cfg(root, model_dir, "sft_straight", "trainer.max_steps=4", *common))
    run(_cfg(root, model_dir, "sft_resumed", "trainer.max_steps=2", *common))
    run(_cfg(root, model_dir, "sft_resumed", "trainer.max_steps=4", *common))  # resumes at step 2
    straight, resumed = _metrics("sft_straight"), _metrics("sft_resumed")
    assert [m["step"] for m in straight] == [0, 1, 2, 3, 4]
    assert [m["step"] for m in resumed] == [0, 1, 2, 3, 4]  # validation before training only on the first run
    del resumed[2]["val/sft_loss"]  # the first run's last step validates
    assert [_deterministic(m) for m in straight] == [_deterministic(m) for m in resumed]
    weights = [load_file(str(root / name / "global_step_4/actor/huggingface/model.safetensors"))
               for name in ("sft_straight", "sft_resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
