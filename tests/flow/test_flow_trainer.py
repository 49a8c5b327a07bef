"""Flow-GRPO end to end through the Ray controller and the trainer (python -m longrl.flow.main's ``run``), on
tiny random SD3 and Wan pipelines: a reward for a target colour rises; a resumed run equals the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import torch
from PIL import Image
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from longrl.config.loader import load_config
from longrl.flow.families import family_of
from longrl.flow.main import run
from longrl.flow.merge import main as merge_main
from longrl.flow.text import TextEncoder
from longrl.flow.validate import FLOW_SCHEMA
from longrl.models.lora import add_lora

pytestmark = pytest.mark.slow
RED = "[1.0,0.0,0.0]"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(model_dir: Path, prompts: Path, name: str, *extra: str):
    return load_config([
        f"data.train_files={prompts}", f"worker.actor.model.model_path={model_dir}", "data.rollout_batch_size=2",
        "worker.actor.global_batch_size=2", "worker.rollout.n=8", "worker.rollout.num_steps=6",
        "worker.rollout.height=8", "worker.rollout.width=8", "worker.actor.micro_batch_size_per_device_for_update=8",
        "worker.actor.clip_ratio_low=0.2", "worker.actor.clip_ratio_high=0.2", "algorithm.kl_coef=0.01",
        "worker.actor.optim.lr=3e-3", "worker.reward.reward_function=longrl.flow.rewards:colour",
        f"+worker.reward.reward_function_kwargs.target={RED}", "trainer.logger=[file]",
        f"trainer.experiment_name={name}", f"trainer.save_checkpoint_path={Path.cwd() / 'checkpoints' / name}",
        *extra],
        config_name="flow", schema=FLOW_SCHEMA)


def _metrics(name: str) -> list[dict]:
    path = Path("outputs/logs/longrl_flow") / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(("timing_s/", "perf/"))}


def _weights(actor_dir: Path, out: Path) -> dict[str, torch.Tensor]:
    dcp_to_torch_save(str(actor_dir / "model"), str(out))
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("family, frames", [("sd3", 1), ("wan", 2)])
def test_a_few_steps_raise_the_colour_reward(tiny_pipeline, prompt_file, monkeypatch, tmp_path, family, frames):
    """20 steps (10 epochs of the 4 prompts, 2 per step, 8 samples each) against ``colour(target=red)``: the mean
    reward of the validation prompts' ODE samples (fixed seeds) rises. Seeds: pipeline 0, data 1, rollout 1."""
    monkeypatch.chdir(tmp_path)
    summary = run(_cfg(tiny_pipeline(family), prompt_file, f"rise_{family}", f"data.val_files={prompt_file}",
                       f"worker.rollout.num_frames={frames}", "trainer.total_epochs=10", "trainer.save_freq=-1"))
    before, after = summary["before"]["val/reward"], summary["after"]["val/reward"]
    print(f"{family}: val/reward (ODE samples of 4 prompts, rollout seed 1, data seed 1, pipeline seed 0) "
          f"{before:.4f} -> {after:.4f} after 20 Flow-GRPO steps")
    assert after > before + 0.05
    steps = _metrics(f"rise_{family}")
    assert [m["step"] for m in steps] == [0, *range(1, 21)]
    train = steps[1:]
    assert all(m["actor/kl_loss"] >= 0 and abs(m["actor/pg_loss"]) < 10 for m in train)
    assert train[0]["actor/ppo_kl"] == pytest.approx(0.0, abs=1e-6)  # the first update starts at the rollout policy
    first, last = (sum(m["critic/score/mean"] for m in part) / 5 for part in (train[:5], train[-5:]))
    assert last > first  # the training samples' reward rises too, not only the validation draws
    image = Image.open(Path("outputs/logs/longrl_flow") / f"rise_{family}" / "media/step_20/row_0.png")
    assert image.size == (8 * frames, 8)  # a validation sample, a video's frames side by side


LORA_2_RANKS = ("worker.actor.lora.rank=4", "worker.actor.lora.alpha=8", "trainer.n_gpus_per_node=2")


@pytest.mark.parametrize("extra", [(), LORA_2_RANKS], ids=["full", "lora_2_ranks"])
def test_resume_continues_bit_for_bit(tiny_pipeline, prompt_file, monkeypatch, tmp_path, extra):
    """4 steps straight, and a second run resumed from the first one's step-2 checkpoint: the same metrics at steps
    3 and 4 and the same weights (full fine-tune with a frozen reference; LoRA sharded over 2 ranks with the base as
    the reference, whose checkpoint holds the adapters only). Two optimizer steps per step and 2 PPO epochs, so the
    clipping and the optimizer state matter."""
    monkeypatch.chdir(tmp_path)
    model_dir = tiny_pipeline("sd3")
    common = ("trainer.max_steps=4", "trainer.total_epochs=2", "trainer.save_freq=2", "worker.rollout.n=4",
              "worker.rollout.num_steps=4", "worker.actor.timestep_fraction=0.5", "worker.actor.global_batch_size=1",
              "worker.actor.micro_batch_size_per_device_for_update=2", "worker.actor.ppo_epochs=2", *extra)
    run(_cfg(model_dir, prompt_file, "straight", *common))
    checkpoints = tmp_path / "checkpoints"
    run(_cfg(model_dir, prompt_file, "resumed", f"trainer.load_checkpoint_path={checkpoints}/straight/global_step_2",
             *common))
    straight, resumed = _metrics("straight"), _metrics("resumed")
    assert [m["step"] for m in resumed] == [3, 4]
    assert [_deterministic(m) for m in straight[2:]] == [_deterministic(m) for m in resumed]
    weights = [_weights(checkpoints / name / "global_step_4/actor", tmp_path / f"{name}.pt")
               for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    step_2 = _weights(checkpoints / "straight/global_step_2/actor", tmp_path / "step_2.pt")
    assert any(not torch.equal(step_2[k], weights[0][k]) for k in weights[0]), "steps 3-4 changed the weights"
    if not extra:  # the second mini-batch and epoch see a moved policy: ratios leave the clip range
        assert max(m["actor/pg_clipfrac"] for m in straight) > 0
    else:
        # Parameters: the adapters only (DCP keeps buffers too: SD3's fixed position table).
        assert [k for k in weights[0] if "lora_" not in k] == ["pos_embed.pos_embed"]
    _check_merged_pipeline(model_dir, checkpoints / "straight/global_step_4/actor", weights[0], bool(extra))
    print(f"resume {extra or 'full'}: {len(weights[0])} tensors equal at step 4; critic/score/mean at steps 3, 4: "
          f"{[m['critic/score/mean'] for m in resumed]} (resumed) == {[m['critic/score/mean'] for m in straight[2:]]}")


def _check_merged_pipeline(model_dir: Path, actor_dir: Path, trained: dict[str, torch.Tensor], lora: bool) -> None:
    """The merged pipeline directory is the original with a transformer that predicts what the trained one does:
    the checkpoint's weights, or the base under peft's LoRA layers carrying the checkpoint's adapters."""
    assert merge_main(["--local_dir", str(actor_dir)]) == 0
    merged = actor_dir / "merged"
    assert {p.name for p in merged.iterdir()} == {p.name for p in model_dir.iterdir()}
    flow = family_of(merged)
    model = flow.load(merged / "transformer").eval()
    reference = flow.load(model_dir / "transformer").eval()
    if lora:
        add_lora(reference, 4, 8.0, ["to_q", "to_k", "to_v", "to_out.0"])
    assert not reference.load_state_dict(trained, strict=False).unexpected_keys
    text = TextEncoder("sd3", merged, torch.device("cpu"), 16).encode(["a photo of a red car"])
    latents = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    untrained = flow.load(model_dir / "transformer").eval()
    with torch.no_grad():
        got, want, base = (flow.velocity(m, latents, torch.tensor(0.5), text) for m in (model, reference, untrained))
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
    assert not torch.allclose(got, base, atol=1e-6)  # the merged weights are the trained ones, not the base
