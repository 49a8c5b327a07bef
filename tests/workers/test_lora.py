"""LoRA on the vision-language policy, through the real hybrid worker on 2 gloo ranks (FSDP): one PPO step trains the
adapters only, the reference is the base, the rollout engine and the merger get W + alpha / rank * B @ A, and a
checkpoint resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from longrl.models import get_adapter
from longrl.models.lora import adapter_scale, add_lora, write_adapter
from longrl.protocol import Batch
from longrl.trainer.merge import merge_actor_checkpoint
from mrsp.spawn import run_on_ranks
from workers.test_actor import FAMILY, _config, _reference_log_probs, rollout_batch  # noqa: F401 (a fixture)

RANK, ALPHA = 4, 8.0
LORA = {"worker.actor.model.lora.rank": RANK, "worker.actor.model.lora.alpha": ALPHA,
        "worker.actor.model.lora.exclude_modules": "'.*visual.*'", "worker.actor.optim.lr": 1e-2,
        "algorithm.use_kl_loss": "true", "algorithm.kl_coef": 0.1}


def _full_state(worker) -> dict[str, torch.Tensor]:
    state = get_model_state_dict(worker.actor.model, options=StateDictOptions(full_state_dict=True))
    return {key: value.detach().clone() for key, value in state.items()}


def _step(worker, batch: Batch) -> None:
    """One PPO step (one optimizer step) that favours the rank's first response and disfavours its second, with the
    KL to the reference."""
    old = worker.compute_log_prob(batch).tensors["old_log_probs"]
    ref = worker.compute_ref_log_prob(batch).tensors["ref_log_probs"]
    mask = batch.tensors["response_mask"]
    advantages = torch.zeros_like(old)
    advantages[0], advantages[1] = mask[0], -mask[1]
    worker.update_actor(batch.union(Batch.from_dict(
        {"old_log_probs": old, "ref_log_probs": ref, "advantages": advantages})))


def _lora_run(model_dir: str, data_dir: str, batch: Batch, out: str) -> dict:
    """On each rank, with its share of ``batch``: a LoRA worker's reference log-probs before and after one step, its
    full state after the step, the rollout engine's weights after the sync; then a checkpoint, a second step, and the
    same second step taken by a fresh worker resumed from the checkpoint."""
    from longrl.workers.hybrid import HybridWorker

    cfg = _config(Path(model_dir), Path(data_dir), 2, **LORA)
    rank = dist.get_rank()
    batch = batch[np.arange(2 * rank, 2 * rank + 2)]  # this data-parallel rank's share: one prompt's two responses
    worker = HybridWorker(cfg, 2)
    assert worker.ref is None  # no second copy of the weights
    ref_before = worker.compute_ref_log_prob(batch).tensors["ref_log_probs"]
    _step(worker, batch)
    result = {"ref_before": ref_before, "ref_after": worker.compute_ref_log_prob(batch).tensors["ref_log_probs"],
              "actor_after": worker.compute_log_prob(batch).tensors["old_log_probs"],
              "trainable": sorted(name for name, p in worker.actor.model.named_parameters() if p.requires_grad),
              "state": _full_state(worker)}
    worker.sync_rollout_weights()
    result["rollout"] = {key: value.clone() for key, value in worker.rollout.model.state_dict().items()}
    worker.save_checkpoint(str(Path(out) / "actor"))
    _step(worker, batch)
    resumed = HybridWorker(cfg, 2)
    resumed.load_checkpoint(str(Path(out) / "actor"))
    _step(resumed, batch)
    result["second"], result["resumed"] = _full_state(worker), _full_state(resumed)
    return result


@pytest.mark.slow
def test_lora_trains_adapters_only_and_merges_everywhere(rollout_batch, tmp_path):  # noqa: F811
    model_dir, data_dir, batch = rollout_batch
    results = run_on_ranks(2, _lora_run, str(model_dir), str(data_dir), batch, str(tmp_path))
    got = results[0]
    for key in ("ref_before", "ref_after", "actor_after"):
        got[key] = torch.cat([result[key] for result in results])
    base = get_adapter(FAMILY).load_model(model_dir).state_dict()
    state = got["state"]
    adapted = sorted(key[: -len(".lora_A.default.weight")] for key in state if key.endswith(".lora_A.default.weight"))
    assert adapted and not any("visual" in key for key in adapted)  # exclude_modules kept the tower the base's
    assert got["trainable"] == sorted(key for key in state if ".lora_" in key)

    # After one optimizer step the base weights are bit-identical and both adapter matrices moved.
    for key, value in state.items():
        if ".lora_" not in key:
            assert torch.equal(value, base[key.replace(".base_layer.", ".")]), key
    assert all(state[f"{prefix}.lora_B.default.weight"].abs().max() > 0 for prefix in adapted)

    # The rollout engine holds the merged weights, computed here independently in float64.
    rollout = got["rollout"]
    assert rollout.keys() == base.keys()
    for prefix in adapted:
        a, b = state[f"{prefix}.lora_A.default.weight"].double(), state[f"{prefix}.lora_B.default.weight"].double()
        expected = base[f"{prefix}.weight"].double() + ALPHA / RANK * b @ a
        assert (rollout[f"{prefix}.weight"].double() - expected).abs().max() < 1e-6, prefix
    unadapted = [key for key in base if key[: -len(".weight")] not in adapted]
    assert all(torch.equal(rollout[key], base[key]) for key in unadapted)

    # The reference is the base: before and after the step, equal to the plain model's log-probs.
    mask = batch.tensors["response_mask"].bool()
    plain = _reference_log_probs(model_dir, batch)
    for ref in (got["ref_before"], got["ref_after"]):
        assert (ref - plain).abs()[mask].max() < 1e-5
    assert (got["actor_after"] - plain).abs()[mask].max() > 1e-3  # while the policy itself moved

    # A checkpoint resumes exactly: the second step from it equals the uninterrupted one, bit for bit.
    assert got["second"].keys() == got["resumed"].keys()
    assert all(torch.equal(got["second"][key], got["resumed"][key]) for key in got["second"])
    assert not all(torch.equal(got["second"][key], state[key]) for key in state)

    # The merger writes a plain Hugging Face model (no peft to load it) with the merged weights.
    actor = tmp_path / "actor"
    adapter_files = load_file(str(actor / "lora_adapter" / "adapter_model.safetensors"))
    assert len(adapter_files) == 2 * len(adapted)
    target = merge_actor_checkpoint(actor)
    assert target == actor / "huggingface"
    assert not any("lora" in key or "base_layer" in key for key in load_file(str(target / "model.safetensors")))
    merged = get_adapter(FAMILY).load_model(target).state_dict()
    assert merged.keys() == rollout.keys()
    for key, value in rollout.items():
        assert torch.allclose(merged[key], value, rtol=0, atol=1e-7), key


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning")  # the embedding case below
def test_target_modules_that_match_nothing_are_refused_with_the_key(tiny_model_dir):
    model = get_adapter(FAMILY).load_model(tiny_model_dir(FAMILY))
    with pytest.raises(ValueError, match=r"worker.actor.model.lora.target_modules='qproj' \(exclude_modules=None\) "
                                         r"leaves no module of Qwen2_5_VLForConditionalGeneration to adapt"):
        add_lora(model, RANK, ALPHA, "qproj", key="worker.actor.model.lora")
    with pytest.raises(ValueError, match="names layers that are not linear"):
        add_lora(get_adapter(FAMILY).load_model(tiny_model_dir(FAMILY)), RANK, ALPHA, "embed_tokens",
                 key="worker.actor.model.lora")


def test_the_saved_adapter_is_peft_s_own_layout(tiny_model_dir, tmp_path):
    """lora_adapter/ as write_adapter leaves it: peft reads its config and sets every adapter matrix from its file."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    model_dir = tiny_model_dir(FAMILY)
    trained = get_adapter(FAMILY).load_model(model_dir)
    add_lora(trained, RANK, ALPHA, "q_proj,v_proj", ".*visual.*")
    adapters = {key: torch.randn(value.shape) for key, value in trained.state_dict().items() if ".lora_" in key}
    write_adapter(tmp_path, adapters, RANK, ALPHA, "q_proj,v_proj", ".*visual.*", str(model_dir))
    assert adapter_scale(tmp_path) == ALPHA / RANK
    config = LoraConfig.from_pretrained(str(tmp_path))
    assert (config.r, config.lora_alpha, set(config.target_modules)) == (RANK, ALPHA, {"q_proj", "v_proj"})
    fresh = get_adapter(FAMILY).load_model(model_dir)
    add_lora(fresh, RANK, ALPHA, "q_proj,v_proj", ".*visual.*")
    stored = load_file(str(tmp_path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(fresh, {key.removeprefix("base_model.model."): value
                                               for key, value in stored.items()})
    assert not result.unexpected_keys
    state = fresh.state_dict()
    assert all(torch.equal(state[key], value) for key, value in adapters.items())
