"""Dynamic batching (worker.actor.dynamic_batching): micro-batches packed under a token budget give the log-probs and
the gradient of fixed micro-batches, since each micro-batch's loss carries its share of the mini-batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.algos import agg_loss
from longrl.workers.micro_batches import loss_share, pack_by_tokens, split_to_count, token_budget_micro_batches
from mrsp.spawn import run_on_ranks

# Six rows of a batch 6 prompt + 5 response columns wide: real tokens per row (prompt, response).
LENGTHS = [(2, 1), (6, 5), (1, 2), (3, 1), (5, 4), (2, 2)]
PROMPT, RESPONSE = 6, 5


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts and right-padded responses as the rollout lays them out: attention and response masks."""
    attention = torch.zeros(len(LENGTHS), PROMPT + RESPONSE, dtype=torch.long)
    response = torch.zeros(len(LENGTHS), RESPONSE, dtype=torch.long)
    for row, (p, r) in enumerate(LENGTHS):
        attention[row, PROMPT - p: PROMPT + r] = 1
        response[row, :r] = 1
    return attention, response


def test_packing_respects_the_budget_and_keeps_groups_whole():
    attention, _ = _masks()  # tokens per row: 3, 11, 3, 4, 9, 4 (34); budget 2 x 11 = 22
    plan = token_budget_micro_batches(attention, size=2)
    tokens = attention.sum(-1)
    assert sorted(np.concatenate(plan).tolist()) == list(range(6))
    assert all(int(tokens[rows].sum()) <= 22 for rows in plan) and len(plan) == 2  # fixed size 2 needs 3
    grouped = token_budget_micro_batches(attention, size=1, groups=["a", "b", "a", "c", "c", "b"])
    assert sorted(map(tuple, (rows.tolist() for rows in grouped))) == [(0, 2), (1, 5), (3, 4)]
    assert pack_by_tokens([5, 5, 5], budget=4) == [[0], [1], [2]]  # a row over the budget still gets a bin


def test_bins_split_to_the_count_other_ranks_need():
    costs = [8, 1, 1, 6]
    bins = split_to_count([[0, 1, 2, 3]], costs, 3)
    assert sorted(sorted(b) for b in bins) == [[0], [1, 2], [3]]
    with pytest.raises(ValueError, match="cannot make 3 micro-batches from 2 units"):
        split_to_count([[0], [1]], [1, 1], 3)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_shares_make_any_grouping_sum_to_the_whole_loss(mode):
    _, mask = _masks()
    mask[2] = 0  # a response with no valid token weighs nothing in the sequence means
    losses = torch.arange(30, dtype=torch.float64).reshape(6, 5) / 7
    whole = agg_loss(losses, mask, mode)
    for plan in ([[0, 1, 2, 3, 4, 5]], [[0], [1, 2], [3, 4, 5]], [[5, 1], [0, 3], [2], [4]]):
        total = sum(agg_loss(losses[rows], mask[rows], mode) * loss_share(mask[rows], mask, mode) for rows in plan)
        assert torch.allclose(total, whole, atol=1e-12)


def _fixed_vs_dynamic(model_dir: str) -> dict[str, dict[str, torch.Tensor]]:
    """On one gloo rank: the tiny policy's log-probs and its PPO gradient on one mini-batch, with fixed micro-batches
    of 2 rows and with dynamic ones (packed prefill, where rows count their real tokens)."""
    from longrl.config.loader import load_config
    from longrl.models import get_adapter
    from longrl.mrsp import build_sp_groups
    from longrl.protocol import Batch
    from longrl.workers.actor import PolicyModel

    attention, response_mask = _masks()
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, 200, attention.shape, generator=generator) * attention
    batch = Batch.from_dict(
        {"input_ids": input_ids, "attention_mask": attention, "responses": input_ids[:, PROMPT:],
         "response_mask": response_mask, "advantages": torch.randn(6, RESPONSE, generator=generator) * response_mask},
        {"uid": np.arange(6), "vision_inputs": np.array([{} for _ in range(6)], dtype=object)})
    results = {}
    for dynamic in (False, True):
        cfg = load_config([f"worker.actor.model.model_path={model_dir}", "worker.actor.padding_free=true",
                           "worker.actor.model.freeze_vision_tower=false",
                           "worker.actor.model.enable_gradient_checkpointing=false",
                           f"worker.actor.dynamic_batching={str(dynamic).lower()}", "algorithm.disable_kl=true",
                           "worker.actor.micro_batch_size_per_device_for_update=2",
                           "worker.actor.micro_batch_size_per_device_for_experience=2"])
        policy = PolicyModel(cfg.worker.actor, get_adapter("qwen2"), torch.device("cpu"), cfg.worker.actor.fsdp,
                             cfg.worker.actor.offload, trainable=True, groups=build_sp_groups(1), pad_token_id=0)
        log_probs = policy.compute_log_prob(batch).tensors["log_probs"]
        update = policy._prepare_update(batch.union(Batch.from_dict({"old_log_probs": log_probs.detach() - 0.1})))
        policy._accumulate(update, policy._ppo_loss, {})
        grads = {name: p.grad.full_tensor().clone() for name, p in policy.model.named_parameters()}
        results[str(dynamic)] = {"log_probs": log_probs, "micro_batches": len(policy._micro_batches(batch, 2)),
                                 **grads}
    return results


@pytest.mark.slow
def test_dynamic_micro_batches_give_the_fixed_log_probs_and_gradient(tiny_model_dir):
    [results] = run_on_ranks(1, _fixed_vs_dynamic, str(tiny_model_dir("qwen2")))
    fixed, dynamic = results["False"], results["True"]
    assert (fixed["micro_batches"], dynamic["micro_batches"]) == (3, 2)
    _, mask = _masks()
    assert torch.allclose(fixed["log_probs"][mask.bool()], dynamic["log_probs"][mask.bool()], atol=1e-5)
    names = [key for key in fixed if key not in ("log_probs", "micro_batches")]
    assert names and any(fixed[name].abs().sum() > 0 for name in names)
    for name in names:
        assert torch.allclose(fixed[name], dynamic[name], atol=1e-6, rtol=1e-4), name
