"""The Flow-GRPO configuration: EasyR1 keys over configs/flow.yaml, a misspelt key named with the valid ones, and the
cross-field rules stated with the values that broke them."""

from __future__ import annotations

import pytest

from longrl.config.errors import ConfigError
from longrl.config.flow_schema import FlowRootConfig
from longrl.config.flow_validate import FLOW_SCHEMA
from longrl.config.loader import load_config
from longrl.trainer.flow_main import main

REQUIRED = ["data.train_files=prompts.jsonl", "worker.actor.model.model_path=/models/sd3"]


def _load(*overrides: str) -> FlowRootConfig:
    return load_config([*REQUIRED, *overrides], config_name="flow", schema=FLOW_SCHEMA)


def test_defaults_and_easyr1_keys():
    cfg = _load("worker.actor.optim.lr=3e-4", "worker.rollout.n=4", "algorithm.kl_coef=0.01", "trainer.max_steps=7",
                "+worker.reward.reward_function_kwargs.target=[0.0,1.0,0.0]")
    assert isinstance(cfg, FlowRootConfig)
    assert cfg.worker.actor.optim.lr == 3e-4 and cfg.worker.rollout.n == 4 and cfg.algorithm.kl_coef == 0.01
    assert cfg.trainer.max_steps == 7 and cfg.trainer.project_name == "longrl_flow"
    assert cfg.worker.reward.reward_function == "longrl.diffusion.rewards:composition"
    assert cfg.worker.reward.reward_function_kwargs == {"target": [0.0, 1.0, 0.0]}
    assert cfg.worker.actor.lora.rank == 0 and cfg.worker.rollout.guidance_scale == 1.0


@pytest.mark.parametrize("override, message", [
    ("worker.rollout.num_step=4",
     r"unknown config key 'worker.rollout.num_step'.*Did you mean 'worker.rollout.num_steps'"),
    ("worker.rollout.n=1", r"worker.rollout.n \(1\) must be >= 2"),
    ("worker.actor.global_batch_size=3", r"data.rollout_batch_size \(8\) must be a positive multiple of"),
    ("worker.actor.micro_batch_size_per_device_for_update=5", r"the 64 samples per rank .* \(5\)"),
    ("worker.actor.timestep_fraction=0", r"timestep_fraction \(0.0\) must be in \(0, 1\]"),
    ("worker.rollout.eta=0", r"eta > 0 \(the SDE's noise"),
    ("worker.reward.reward_type=batched", r"worker.reward.reward_type='batched' is not one of"),
])
def test_mistakes_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        _load(override)


def test_the_entry_point_reports_a_config_error(capsys):
    assert main([*REQUIRED, "worker.rollout.n=1"]) == 2
    assert "config error: worker.rollout.n (1) must be >= 2" in capsys.readouterr().err
