"""The policy worker on one gloo rank: adamw_bf16 under FSDP with its state offloaded between updates, model-only
checkpoints (trainer.save_model_only) and a resume from them, and a tokenizer read from
worker.actor.model.tokenizer_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.trainer.checkpoint import fresh_optimizer_note
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow


PROBE = "<longrl_tokenizer_probe>"


def _worker(model_dir: str, *overrides: str):
    """A real policy worker (the process group is already joined) training the tiny model with adamw_bf16."""
    from longrl.config.loader import load_config
    from longrl.workers.policy_worker import PolicyWorker

    cfg = load_config([f"worker.actor.model.model_path={model_dir}", "worker.actor.model.freeze_vision_tower=false",
                       "worker.actor.model.enable_gradient_checkpointing=false", "algorithm.disable_kl=true",
                       "worker.actor.optim.lr=1e-3", "worker.actor.optim.strategy=adamw_bf16", *overrides])
    return PolicyWorker(cfg, total_steps=2)


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


def _save_and_resume(model_dir: str, tokenizer_dir: str, full: str, model_only: str) -> dict:
    """Train one step, save it in full and model-only, and resume a fresh policy from each."""
    worker = _worker(model_dir, f"worker.actor.model.tokenizer_path={tokenizer_dir}",
                     "worker.actor.offload.offload_optimizer=true")
    policy = worker.actor
    _one_update(policy)
    worker.save_checkpoint(full)
    worker.cfg.trainer.save_model_only = True
    worker.save_checkpoint(model_only)
    result = {"saved": _state(policy), "dtypes": {str(s["exp_avg"].dtype) for s in policy.optimizer.state.values()},
              "probe_id": worker.tokenizer.convert_tokens_to_ids(PROBE),
              "offloaded_to": {value.to_local().device.type for s in policy.optimizer.state.values()
                               for value in s.values() if value.dim() > 0}}
    for name, out in (("full", full), ("model_only", model_only)):
        resumed = _worker(model_dir).actor
        resumed.load(out)
        result[name] = {"state": _state(resumed), "lr_steps": resumed.scheduler.last_epoch}
    return result


@pytest.fixture(scope="module")
def saved(tiny_model_dir, tmp_path_factory):
    """The spawn's results and the two step directories."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("policy_state")
    model_dir = tiny_model_dir("qwen2")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.add_tokens([PROBE])
    tokenizer.save_pretrained(root / "tokenizer")
    steps = {name: root / name / "global_step_1" for name in ("full", "model_only")}
    [result] = run_on_ranks(1, _save_and_resume, str(model_dir), str(root / "tokenizer"),
                            str(steps["full"] / "actor"), str(steps["model_only"] / "actor"))
    return result, steps


def test_a_model_only_checkpoint_resumes_the_weights_with_a_fresh_optimizer(saved):
    result, steps = saved
    assert result["dtypes"] == {"torch.bfloat16"}  # adamw_bf16's moments, on FSDP's sharded parameters
    assert result["offloaded_to"] == {"cpu"}  # offload_optimizer's path ran (on this CPU-only suite, a no-op move)
    saved_state = result["saved"]
    weights = [key for key in saved_state if key.startswith("w/")]
    moments = [key for key in saved_state if key.startswith("m/")]
    assert weights and moments
    for name in ("full", "model_only"):
        resumed = result[name]["state"]
        assert all(torch.equal(saved_state[key], resumed[key]) for key in weights), name
        assert result[name]["lr_steps"] == 1, name  # the lr schedule resumes either way
    assert all(torch.equal(saved_state[key], result["full"]["state"][key]) for key in moments)
    assert not any(key.startswith("m/") for key in result["model_only"]["state"])  # empty until the next step
    assert (steps["full"] / "actor" / "optim").is_dir() and not (steps["model_only"] / "actor" / "optim").exists()
    assert fresh_optimizer_note(steps["full"]) is None
    assert "the optimizer starts fresh" in fresh_optimizer_note(steps["model_only"])


def test_the_tokenizer_comes_from_tokenizer_path_and_is_checkpointed(saved, tiny_model_dir):
    from transformers import AutoTokenizer

    result, steps = saved
    base = AutoTokenizer.from_pretrained(str(tiny_model_dir("qwen2")))
    assert PROBE not in base.get_vocab() and result["probe_id"] == len(base)  # the added token, not unk
    checkpointed = AutoTokenizer.from_pretrained(str(steps["full"] / "actor" / "huggingface"))
    assert checkpointed.convert_tokens_to_ids(PROBE) == result["probe_id"]
