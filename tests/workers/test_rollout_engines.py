"""Rollout engines come from one registry (``worker.rollout.name``): each entry is an engine class that builds itself
from the actor's model section and the rollout section."""

from __future__ import annotations

import pytest
import torch

from longrl.config.choices import ROLLOUT_ENGINES
from longrl.config.loader import load_config
from longrl.models import get_adapter
from longrl.workers.rollout.base import RolloutEngine
from longrl.workers.rollout.engines import build_rollout_engine, engine_class, engine_dtype
from longrl.workers.rollout.hf import HFRollout


def test_every_registered_engine_is_an_engine_class_and_an_unknown_name_lists_them():
    for name in ROLLOUT_ENGINES:
        cls = engine_class(name)
        assert issubclass(cls, RolloutEngine) and callable(cls.from_config)
        assert isinstance(cls.needs_video_features, bool)
    with pytest.raises(ValueError, match=r"worker.rollout.name='sglang' is not one of \['hf', 'vllm'\]"):
        engine_class("sglang")


def test_the_factory_builds_the_named_engine_from_the_actor_model_and_rollout_sections(tiny_model_dir):
    cfg = load_config([f"worker.actor.model.model_path={tiny_model_dir('qwen2')}", "worker.rollout.enforce_eager=true"])
    cpu = torch.device("cpu")
    engine = build_rollout_engine(cfg.worker.actor.model, cfg.worker.rollout, get_adapter("qwen2"), engine_dtype(cpu),
                                  cpu)
    assert isinstance(engine, HFRollout) and engine.cuda_graphs is False
    assert next(engine.model.parameters()).dtype == torch.float32 and engine_dtype(torch.device("cuda")) == torch.bfloat16
