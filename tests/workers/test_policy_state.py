"""The FSDP policy's optimizer state on one gloo rank: adamw_bf16 under FSDP, model-only checkpoints
(trainer.save_model_only) and a resume from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from longrl.trainer.checkpoint import fresh_optimizer_note
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow


def _policy(model_dir: str, *overrides: str):
    from longrl.config.loader import load_config
    from longrl.models import get_adapter
    from longrl.mrsp import build_sp_groups
    from longrl.workers.actor import PolicyModel

    cfg = load_config([f"worker.actor.model.model_path={model_dir}", "worker.actor.model.freeze_vision_tower=false",
                       "worker.actor.model.enable_gradient_checkpointing=false", "algorithm.disable_kl=true",
                       "worker.actor.optim.lr=1e-3", "worker.actor.optim.strategy=adamw_bf16", *overrides])
    return PolicyModel(cfg, get_adapter("qwen2"), torch.device("cpu"), cfg.worker.actor.fsdp, cfg.worker.actor.offload,
                       trainable=True, groups=build_sp_groups(1), pad_token_id=0)


def _one_update(policy) -> None:
    from longrl.protocol import Batch

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 200, (2, 7), generator=generator)
    mask = torch.ones(2, 3, dtype=torch.long)
    batch = Batch.from_dict({"input_ids": ids, "attention_mask": torch.ones_like(ids), "responses": ids[:, 4:],
                             "response_mask": mask, "advantages": torch.tensor([[1.0] * 3, [-1.0] * 3])},
                            {"uid": np.arange(2), "vision_inputs": np.array([{}, {}], dtype=object)})
    old = policy.compute_log_prob(batch).tensors["log_probs"]
    policy.update_policy(batch.union(Batch.from_dict({"old_log_probs": old})), data_parallel_size=1)


def _state(policy) -> dict[str, torch.Tensor]:
    weights = {f"w/{name}": p.full_tensor().detach().clone() for name, p in policy.model.named_parameters()}
    moments = {f"m/{index}": state["exp_avg"].full_tensor().clone()
               for index, state in enumerate(policy.optimizer.state.values())}
    return {**weights, **moments}


def _save_and_resume(model_dir: str, full: str, model_only: str) -> dict:
    """Train one step with adamw_bf16, save it in full and model-only, and resume a fresh policy from each."""
    from longrl.models import get_adapter

    processor = get_adapter("qwen2").load_processor(model_dir)
    policy = _policy(model_dir)
    _one_update(policy)
    policy.save(full, processor)
    policy.cfg.trainer.save_model_only = True
    policy.save(model_only, processor)
    result = {"saved": _state(policy), "dtypes": {str(s["exp_avg"].dtype) for s in policy.optimizer.state.values()}}
    for name, out in (("full", full), ("model_only", model_only)):
        resumed = _policy(model_dir)
        resumed.load(out)
        result[name] = {"state": _state(resumed), "lr_steps": resumed.scheduler.last_epoch}
    return result


def test_a_model_only_checkpoint_resumes_the_weights_with_a_fresh_optimizer(tiny_model_dir, tmp_path):
    steps = {name: tmp_path / name / "global_step_1" for name in ("full", "model_only")}
    for step in steps.values():
        (step / "actor").mkdir(parents=True)
    [result] = run_on_ranks(1, _save_and_resume, str(tiny_model_dir("qwen2")), str(steps["full"] / "actor"),
                            str(steps["model_only"] / "actor"))
    assert result["dtypes"] == {"torch.bfloat16"}  # adamw_bf16's moments, on FSDP's sharded parameters
    saved = result["saved"]
    weights = [key for key in saved if key.startswith("w/")]
    moments = [key for key in saved if key.startswith("m/")]
    assert weights and moments
    for name in ("full", "model_only"):
        resumed = result[name]["state"]
        assert all(torch.equal(saved[key], resumed[key]) for key in weights), name
        assert result[name]["lr_steps"] == 1, name  # the lr schedule resumes either way
    assert all(torch.equal(saved[key], result["full"]["state"][key]) for key in moments)
    assert not any(key.startswith("m/") for key in result["model_only"]["state"])  # empty until the next step
    assert (steps["full"] / "actor" / "optim").is_dir() and not (steps["model_only"] / "actor" / "optim").exists()
    assert fresh_optimizer_note(steps["full"]) is None
    assert "the optimizer starts fresh" in fresh_optimizer_note(steps["model_only"])
