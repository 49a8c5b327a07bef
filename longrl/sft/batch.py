"""Collated SFT samples -> the batch layout the actor scores: prompt + target, exactly a rollout's layout.

The targets take the place of generated responses (``n = 1``), so the actor's log-prob pass, MR-SP prefill and
update run unchanged: prompts left-padded, targets right-padded to the batch's longest target, ``response_mask``
over each target up to its end-of-turn token.
"""

from __future__ import annotations

from typing import Any

import torch

from longrl.data.dataset import prompts_to_batch
from longrl.protocol import ROLLOUT_LOG_PROBS, TARGET_IDS, Batch
from longrl.workers.rollout.output import build_rollout_batch


def sft_batch(collated: dict[str, Any], pad_token_id: int, eos_token_id: int) -> Batch:
    """``collated`` (from ``collate_left_padded`` over samples with ``target_ids``) as a prompt+target batch."""
    targets = collated[TARGET_IDS]
    width = max((len(ids) for ids in targets), default=0)
    tokens = torch.full((len(targets), width), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(targets):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    batch = build_rollout_batch(prompts_to_batch(collated), 1, tokens, torch.zeros(tokens.shape), [eos_token_id],
                                pad_token_id, width)
    return batch.select([key for key in batch.tensors.keys() if key != ROLLOUT_LOG_PROBS])
