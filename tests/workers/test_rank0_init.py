"""worker.{actor,ref}.fsdp.enable_rank0_init on 2 gloo ranks: only rank 0 reads the checkpoint, and the sharded
policy is bit-identical to the one every rank loads itself (weights, buffers, configs, log-probs, one update), with
LoRA and gradient checkpointing; the reference follows its own key.

Rank 1's model directory under rank-0 init is a copy without any weight file, so a read of the weights there would
fail: every rank-1 result below was reached without opening one. One spawn checks everything (the suite's time is
tight): a failure of rank 0's read is raised on both ranks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.distributed as dist

from longrl.models import get_adapter
from longrl.protocol import Batch
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow

FAMILY = "qwen2_5_vl"  # tied embeddings, the published-positions and encoder-output patches, a vision tower
BASE = ["worker.actor.model.enable_gradient_checkpointing=true", "worker.actor.model.freeze_vision_tower=false",
        "algorithm.disable_kl=true", "worker.actor.optim.lr=1e-2", "worker.rollout.seed=3"]
LORA = ["worker.actor.model.lora.rank=4", "worker.actor.model.lora.alpha=8"]


def _batch() -> Batch:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 200, (2, 7), generator=generator)
    mask = torch.ones(2, 3, dtype=torch.long)
    return Batch.from_dict({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                            "mm_token_type_ids": torch.zeros_like(ids), "responses": ids[:, 4:],
                            "response_mask": mask, "advantages": torch.tensor([[1.0] * 3, [-1.0] * 3])},
                           {"uid": np.arange(2), "vision_inputs": np.array([{}, {}], dtype=object)})


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's full (gathered) value and every buffer of this rank."""
    weights = {f"p/{name}": param.full_tensor().detach().clone() for name, param in model.named_parameters()}
    return {**weights, **{f"b/{name}": buffer.detach().clone() for name, buffer in model.named_buffers()}}


def _policy_run(model_dir: str, weightless_dir: str) -> dict:
    """On each rank: for a full fine-tune and for LoRA, the policy loaded by every rank and the one initialised from
    rank 0 (rank 1 reading ``weightless_dir``): weights and buffers, configs, log-probs, and weights after one update;
    then the reference under its own key (the actor's off)."""
    from longrl.config.loader import load_config
    from longrl.config.schema import FSDPConfig, OffloadConfig
    from longrl.mrsp import build_sp_groups
    from longrl.workers.actor import PolicyModel
    from longrl.workers.fsdp import load_sharded_model

    adapter = get_adapter(FAMILY)
    groups = build_sp_groups(1)
    batch = _batch()
    result: dict = {}
    for variant, extra in (("full", []), ("lora", LORA)):
        for rank0_init in (False, True):
            path = weightless_dir if rank0_init and dist.get_rank() > 0 else model_dir
            cfg = load_config([f"worker.actor.model.model_path={path}", *BASE, *extra,
                               f"worker.actor.fsdp.enable_rank0_init={str(rank0_init).lower()}"])
            actor = cfg.worker.actor
            policy = PolicyModel(actor, adapter, torch.device("cpu"), actor.fsdp, actor.offload, trainable=True,
                                 groups=groups, pad_token_id=0, total_steps=2)
            config = policy.model.config.to_dict()
            if dist.get_rank() > 0:
                config.pop("_name_or_path")  # the directory given, which differs on rank 1 by design
            got = {"before": _weights(policy.model), "config": config,
                   "generation": policy.model.generation_config.to_dict(),
                   "trainable": sorted(name for name, p in policy.model.named_parameters() if p.requires_grad)}
            got["log_probs"] = policy.compute_log_prob(batch).tensors["log_probs"]
            policy.update_policy(batch.union(Batch.from_dict({"old_log_probs": got["log_probs"]})),
                                 data_parallel_size=dist.get_world_size())
            got["after"] = _weights(policy.model)
            result[variant, rank0_init] = got
    cfg = load_config([f"worker.actor.model.model_path={weightless_dir if dist.get_rank() else model_dir}", *BASE,
                       "worker.actor.fsdp.enable_rank0_init=false", "worker.ref.fsdp.enable_rank0_init=true"])
    reference = PolicyModel(cfg.worker.actor, adapter, torch.device("cpu"), cfg.worker.ref.fsdp, cfg.worker.ref.offload,
                            trainable=False, groups=groups, pad_token_id=0)
    result["reference"] = _weights(reference.model)
    # Rank 0 cannot read the weights (rank 1 builds its empty model fine): both ranks raise, neither waits.
    try:
        load_sharded_model(adapter, weightless_dir, FSDPConfig(enable_rank0_init=True), OffloadConfig(),
                           torch.device("cpu"))
        result["failure"] = "no error"
    except Exception as exc:  # noqa: BLE001 (the message is what the test reads)
        result["failure"] = f"{type(exc).__name__}: {exc}"
    return result


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The keys whose tensors differ in any bit (or dtype), or that only one side has."""
    return sorted(key for key in a.keys() | b.keys()
                  if key not in a or key not in b or a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key]))


def test_rank0_init_matches_loading_on_every_rank_without_rank1_reading_weights(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir(FAMILY)
    weightless = tmp_path / "weightless"
    shutil.copytree(model_dir, weightless, ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json",
                                                                        "*.bin", "*.pt"))
    assert not any(path.suffix in {".safetensors", ".bin", ".pt"} for path in weightless.rglob("*"))
    results = run_on_ranks(2, _policy_run, str(model_dir), str(weightless))

    for variant in ("full", "lora"):
        plain, rank0 = results[0][variant, False], results[0][variant, True]
        assert plain["before"] and any(key.startswith("b/") and "inv_freq" in key for key in plain["before"])
        for rank in range(2):
            loaded, initialised = results[rank][variant, False], results[rank][variant, True]
            # Bit-identical weights and buffers, on both ranks, before and after one optimizer step.
            for when in ("before", "after"):
                assert _same(loaded[when], initialised[when]) == [], (variant, rank, when)
                assert _same(plain[when], initialised[when]) == [], (variant, rank, when)
            assert torch.equal(loaded["log_probs"], initialised["log_probs"]), (variant, rank)
            assert loaded["config"] == initialised["config"] and loaded["generation"] == initialised["generation"]
            assert loaded["trainable"] == initialised["trainable"]
        assert _same(rank0["before"], rank0["after"]) != []  # the step moved something
    lora = results[0]["lora", True]
    assert lora["trainable"] and all(".lora_" in name for name in lora["trainable"])
    # The adapters' initial A matrices are lora_seed's draw, not zeros or garbage from an empty allocation.
    assert any(key.endswith("lora_A.default.weight") and lora["before"][key].abs().max() > 0 for key in lora["before"])

    # The reference under worker.ref.fsdp.enable_rank0_init (rank 1 again without weight files) is the base model.
    base = {key: value for key, value in results[0]["full", False]["before"].items()}
    for rank in range(2):
        assert _same(base, results[rank]["reference"]) == [], rank

    # A failure before the first broadcast is raised on every rank, naming rank 0 on the others.
    assert results[0]["failure"] != "no error" and not results[0]["failure"].startswith("RuntimeError: rank-0")
    assert results[1]["failure"].startswith("RuntimeError: rank-0 initialisation of"), results[1]["failure"]
    assert "failed on rank 0" in results[1]["failure"]
