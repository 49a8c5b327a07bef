"""The ``n`` samples of each prompt split over the ranks of a sequence-parallel group.

The ranks of an SP group hold the same prompts (one data-parallel share). Unsplit, each rank draws all ``n`` samples
from its own rollout copy: the same tokens ``G`` times over, with ``G`` times the decode work and key/value cache the
group needs. Split, rank ``r`` draws samples ``r*n/G .. (r+1)*n/G - 1`` of every prompt and the group all-gathers
the tokens and log-probs, so every rank ends with all ``n`` samples. Samples are seeded by their index
(``SamplingParams.first_sample``), so the gathered batch is the one a single rank drawing all ``n`` would return.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from longrl.mrsp.groups import SequenceParallelGroups
from longrl.protocol import RESPONSES, ROLLOUT_LOG_PROBS, Batch
from longrl.workers.rollout.base import RolloutEngine
from longrl.workers.rollout.output import build_rollout_batch
from longrl.workers.rollout.sampling import SamplingParams

__all__ = ["generate_over_group"]


def generate_over_group(engine: RolloutEngine, prompts: Batch, sampling: SamplingParams,
                        groups: SequenceParallelGroups, device: torch.device) -> Batch:
    """``engine.generate(prompts, sampling)``, its samples drawn ``n / G`` per rank when ``G`` divides ``n``
    (otherwise every rank draws all of them). ``device``: where the group's collectives run (the rank's GPU)."""
    size = groups.sp_size
    if size == 1 or sampling.n % size:
        return engine.generate(prompts, sampling)
    share = sampling.n // size
    part = engine.generate(prompts, dataclasses.replace(
        sampling, n=share, first_sample=sampling.first_sample + groups.sp_rank * share))
    rows, width = len(prompts), sampling.max_new_tokens

    def gathered(key: str, fill: float) -> torch.Tensor:
        """(B * n, width): every rank's rows of ``key``, a prompt's samples in rank order."""
        local = part.tensors[key]
        local = torch.nn.functional.pad(local, (0, width - local.shape[1]), value=fill)
        pieces = [torch.empty_like(local, device=device) for _ in range(size)]
        dist.all_gather(pieces, local.to(device), group=groups.group)
        stacked = torch.stack(pieces).view(size, rows, share, width)
        return stacked.transpose(0, 1).reshape(rows * sampling.n, width).to(local.device)

    return build_rollout_batch(prompts, sampling.n, gathered(RESPONSES, sampling.pad_token_id),
                               gathered(ROLLOUT_LOG_PROBS, 0.0), sampling.eos_token_ids, sampling.pad_token_id,
                               width)
