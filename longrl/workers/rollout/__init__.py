"""Rollout engines: generate ``n`` responses per prompt from prompt embeddings, take actor weights."""

from longrl.workers.rollout.base import RolloutEngine
from longrl.workers.rollout.output import build_rollout_batch
from longrl.workers.rollout.sampling import SamplingParams

__all__ = ["RolloutEngine", "SamplingParams", "build_rollout_batch"]
