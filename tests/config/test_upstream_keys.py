"""EasyR1 / Long-RL keys: renamed ones are aliases, unneeded ones are dropped with a note, unimplemented ones are
refused with the reason unless they hold their no-op value, and keys longrl does not act on are logged."""

from __future__ import annotations

import logging

import pytest

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config

# The shape of an EasyR1 / Long-RL config.yaml: their section names and keys, values of our choosing.
UPSTREAM_CONFIG = """
data:
  prompt_key: problem
  image_dir: null
  video_fps: 2.0
  mini_rollout_batch_size: null
  override_chat_template: null
  rollout_batch_size: 8
algorithm:
  disable_kl: false
  use_kl_loss: true
worker:
  actor:
    global_batch_size: 8
    dynamic_batching: true
    loss_avg_mode: token
    model:
      lora:
        rank: 0
        alpha: 64
        target_modules: all-linear
        exclude_modules: .*visual.*
    fsdp:
      enable_rank0_init: true
    offload:
      offload_optimizer: true
  rollout:
    limit_images: 0
    disable_tqdm: false
trainer:
  max_try_make_batch: 20
  save_model_only: false
  find_last_checkpoint: true
"""


def test_an_upstream_config_file_composes_with_notes_for_what_is_not_needed(tmp_path, caplog):
    config = tmp_path / "config.yaml"
    config.write_text(UPSTREAM_CONFIG)
    with caplog.at_level(logging.WARNING, logger="longrl.config"):
        cfg = load_config(["worker.ref.fsdp.enable_rank0_init=true"], config_file=config)
    assert cfg.worker.rollout.fps == 2.0 and cfg.worker.rollout.num_video_frames is None
    assert cfg.algorithm.max_try_make_batch == 20 and cfg.worker.actor.loss_agg_mode == "token-mean"
    lora = cfg.worker.actor.model.lora
    assert (lora.rank, lora.alpha, lora.target_modules, lora.exclude_modules) == (0, 64, "all-linear", ".*visual.*")
    notes = caplog.text
    assert cfg.worker.actor.dynamic_batching is True
    # Applied (only rank 0 reads the checkpoint: tests/workers/test_rank0_init.py), so no longer logged as unapplied.
    assert cfg.worker.actor.fsdp.enable_rank0_init is True and cfg.worker.ref.fsdp.enable_rank0_init is True
    assert "enable_rank0_init" not in notes
    assert cfg.worker.actor.offload.offload_optimizer is True and "offload_optimizer" not in notes


@pytest.mark.parametrize("upstream, key, expected", [
    ("trainer.max_try_make_batch=7", "algorithm.max_try_make_batch", 7),
    ("worker.actor.loss_avg_mode=seq", "worker.actor.loss_agg_mode", "seq-mean-token-mean"),
    ("worker.actor.loss_avg_mode=token", "worker.actor.loss_agg_mode", "token-mean"),
    ("data.is_omni=true", "data.use_audio", True),
    ("data.video_fps=0.5", "worker.rollout.fps", 0.5),
    ("worker.rollout.open_ended_reward=true", "worker.reward.kind", "open_ended"),  # Long-RL's place for it
    ("worker.rollout.open_ended_reward=True", "worker.reward.kind", "open_ended"),
    ("worker.rollout.open_ended_reward=false", "worker.reward.kind", "function"),
    ("worker.reward.kind=open_ended", "worker.reward.kind", "open_ended"),
])
def test_renamed_keys_are_aliases(upstream, key, expected):
    cfg = load_config([upstream])
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    assert node == expected


def test_an_unknown_reward_kind_or_rollout_engine_is_refused_with_the_registered_ones():
    with pytest.raises(ConfigError, match=r"worker.reward.kind='judge' is not one of \['function', 'open_ended'\]"):
        load_config(["worker.reward.kind=judge"])
    with pytest.raises(ConfigError, match=r"worker.rollout.name='sglang' is not one of \['hf', 'vllm'\]"):
        load_config(["worker.rollout.name=sglang"])


def test_video_fps_keeps_an_explicit_frame_count_and_then_the_rule_applies():
    with pytest.raises(ConfigError, match="set exactly one of worker.rollout.num_video_frames"):
        load_config(["data.video_fps=2.0", "worker.rollout.num_video_frames=8"])


def test_keys_longrl_does_not_need_are_dropped_with_the_reason(caplog):
    with caplog.at_level(logging.WARNING, logger="longrl.config"):
        load_config(["data.vila_model=true", "worker.rollout.trust_remote_code=true", "data.num_workers=1"])
    assert "data.vila_model=true is not needed: longrl reads the model family from the model directory" in caplog.text
    assert "worker.rollout.trust_remote_code=true is not needed" in caplog.text
    assert "data.num_workers=1 is not needed" in caplog.text


def test_an_unimplemented_key_is_refused_with_its_reason():
    with pytest.raises(ConfigError) as error:
        load_config(["trainer.find_last_checkpoint=false"])
    message = str(error.value)
    assert message.startswith("not supported by longrl:\n")
    for refused in ("trainer.find_last_checkpoint=false: longrl always resumes from the last checkpoint",):
        assert refused in message


def test_mini_rollout_batch_size_is_a_key_of_its_own():
    assert load_config(["data.mini_rollout_batch_size=2"]).data.mini_rollout_batch_size == 2
    with pytest.raises(ConfigError, match="data.mini_rollout_batch_size"):
        load_config(["data.mini_rollout_batch_size=0"])


def test_an_unknown_optimizer_strategy_is_refused_with_the_known_ones():
    assert load_config(["worker.actor.optim.strategy=adamw_bf16"]).worker.actor.optim.strategy == "adamw_bf16"
    with pytest.raises(ConfigError, match=r"worker.actor.optim.strategy='sgd' is not one of \['adamw', 'adamw_bf16'\]"):
        load_config(["worker.actor.optim.strategy=sgd"])


def test_flow_grpo_still_notes_rank0_init_as_not_applied(tmp_path, caplog):
    """The Flow-GRPO worker loads its transformer on every rank: the shared FSDP key is logged there, not dropped."""
    from longrl.flow.validate import FLOW_SCHEMA

    with caplog.at_level(logging.WARNING, logger="longrl.config"):
        load_config([f"data.train_files={tmp_path / 'prompts.txt'}", f"worker.actor.model.model_path={tmp_path}",
                     "worker.ref.fsdp.enable_rank0_init=true"], config_name="flow", schema=FLOW_SCHEMA)
    assert "worker.ref.fsdp.enable_rank0_init=true is accepted but not applied: every rank loads" in caplog.text
