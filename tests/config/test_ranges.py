"""Every numeric key is range-checked, and all violations come back in one error naming key, value and range."""

from __future__ import annotations

import copy
from functools import reduce

import pytest

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.config.ranges import NUMERIC_RANGES, Range
from longrl.config.schema import RootConfig
from longrl.config.validate import validate_config


def _error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(list(overrides))
    return str(info.value)


@pytest.fixture(scope="module")
def defaults():
    return load_config([])


def _validation_error(cfg, key: str, value) -> str:
    cfg = copy.deepcopy(cfg)
    *parents, name = key.split(".")
    setattr(reduce(getattr, parents, cfg), name, value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


@pytest.mark.parametrize("key, value, line", [
    # a count below 1: a negative batch once passed the modulo rule, zero divided by zero
    ("worker.actor.global_batch_size", -2, "worker.actor.global_batch_size=-2: allowed >= 1"),
    ("worker.actor.global_batch_size", 0, "worker.actor.global_batch_size=0: allowed >= 1"),
    # a length: blamed algorithm.overlong_buffer_len before
    ("data.max_response_length", 0, "data.max_response_length=0: allowed >= 1"),
    # a real scale that must be positive
    ("worker.actor.optim.lr", -1e-6, "worker.actor.optim.lr=-1e-06: allowed >= 0"),
    # a fraction, open at one end
    ("worker.rollout.top_p", 1.5, "worker.rollout.top_p=1.5: allowed in (0, 1]"),
    ("worker.actor.clip_ratio_low", 1.0, "worker.actor.clip_ratio_low=1.0: allowed in [0, 1)"),
    # a list of fractions
    ("worker.actor.optim.betas", [0.9, 1.2], "worker.actor.optim.betas=[0.9, 1.2]: allowed in [0, 1)"),
    # -1 means off; 0 means nothing
    ("trainer.save_limit", 0, "trainer.save_limit=0: allowed -1 (off) or >= 1"),
    ("worker.rollout.top_k", 0, "worker.rollout.top_k=0: allowed -1 (off) or >= 1"),
    # optional keys: null or in range
    ("trainer.max_steps", 0, "trainer.max_steps=0: allowed null or >= 1"),
    ("worker.rollout.num_video_frames", 0, "worker.rollout.num_video_frames=0: allowed null or >= 1"),
    # not a number at all
    ("worker.rollout.temperature", float("nan"), "worker.rollout.temperature=nan: allowed >= 0"),
])
def test_out_of_range_value_names_key_value_and_range(defaults, key, value, line):
    assert f"\n  {line}" in _validation_error(defaults, key, value)


def test_all_violations_are_reported_together():
    message = _error("worker.actor.global_batch_size=0", "data.max_response_length=0", "worker.rollout.n=0",
                     "trainer.total_epochs=-1", "worker.rollout.fps=-2", "worker.rollout.num_video_frames=null")
    assert message.startswith("5 value(s) out of range:")
    for key in ("worker.actor.global_batch_size=0", "data.max_response_length=0", "worker.rollout.n=0",
                "trainer.total_epochs=-1", "worker.rollout.fps=-2.0"):
        assert key in message


def test_defaults_and_boundaries_pass():
    load_config(["worker.rollout.top_p=1.0", "worker.rollout.temperature=0", "trainer.save_limit=-1",
                 "trainer.save_limit=1", "algorithm.overlong_buffer_len=0", "worker.actor.optim.lr_warmup_ratio=1"])


def test_every_key_in_the_table_exists_in_the_schema():
    cfg = RootConfig()
    for key in NUMERIC_RANGES:
        node = cfg
        for part in key.split("."):
            assert hasattr(node, part), key
            node = getattr(node, part)


def test_range_text():
    assert Range(low=0, high=1, low_open=True).describe() == "in (0, 1]"
    assert Range(low=1, off=-1, nullable=True).describe() == "-1 (off) or null or >= 1"
