"""Rollout engines by name: ``worker.rollout.name`` is looked up in :data:`longrl.config.choices.ROLLOUT_ENGINES`
(``name -> "module:Class"``, the module imported only when chosen) and the class builds itself with ``from_config``.

The worker, the config's checks and :mod:`longrl.inference` all go through here, so a new engine is its module plus
one line in that table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from longrl.config.choices import ROLLOUT_ENGINES, resolve_choice

if TYPE_CHECKING:
    from longrl.config.schema import ModelConfig, RolloutConfig
    from longrl.models.registry import ModelAdapter
    from longrl.workers.rollout.base import RolloutEngine

__all__ = ["build_rollout_engine", "engine_class", "engine_dtype"]


def engine_class(name: str) -> type[RolloutEngine]:
    """The engine class registered as ``name``; an unknown name raises ``ValueError`` listing the registered ones."""
    return resolve_choice(ROLLOUT_ENGINES, "worker.rollout.name", name)


def engine_dtype(device: torch.device) -> torch.dtype:
    """The dtype an engine computes in: float32 on the CPU (the numerical reference), bfloat16 on a GPU."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def build_rollout_engine(model: ModelConfig, rollout: RolloutConfig, adapter: ModelAdapter, dtype: torch.dtype,
                         device: torch.device) -> RolloutEngine:
    """The ``rollout.name`` engine serving the checkpoint of ``model`` (``worker.actor.model``) on ``device``."""
    return engine_class(rollout.name).from_config(model, rollout, adapter, dtype, device)
