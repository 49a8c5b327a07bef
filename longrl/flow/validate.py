"""Cross-field rules of a Flow-GRPO run's configuration, checked at start so a bad combination fails before any work.

Each message states the rule and the values that broke it, as :mod:`longrl.config.validate` does for the text stages.
"""

from __future__ import annotations

from longrl.config.errors import ConfigError
from longrl.flow.config import FlowRootConfig
from longrl.flow.upstream_keys import FLOW_UPSTREAM_KEYS
from longrl.config.ranges import TRAINER_RANGES, check_ranges
from longrl.config.stage_schema import StageSchema
from longrl.config.validate import RESUME_MISMATCH_POLICIES, REWARD_ERROR_POLICIES
from longrl.config.choices import REWARD_TYPES


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_flow_config(cfg: FlowRootConfig) -> None:
    """Raise :class:`ConfigError` listing the ``trainer.*`` values out of range, else naming the first rule that
    ``cfg`` breaks."""
    check_ranges(cfg, TRAINER_RANGES)
    _require(cfg.trainer.resume_mismatch in RESUME_MISMATCH_POLICIES,
             f"trainer.resume_mismatch={cfg.trainer.resume_mismatch!r} is not one of "
             f"{sorted(RESUME_MISMATCH_POLICIES)}")
    data, actor, rollout, reward = cfg.data, cfg.worker.actor, cfg.worker.rollout, cfg.worker.reward
    world = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node
    _require(world >= 1, f"trainer.nnodes x trainer.n_gpus_per_node ({world}) must be >= 1")
    _require(rollout.n >= 2, f"worker.rollout.n ({rollout.n}) must be >= 2: GRPO compares the samples of a prompt")
    _require(data.rollout_batch_size >= 1 and actor.global_batch_size >= 1
             and data.rollout_batch_size % actor.global_batch_size == 0,
             f"data.rollout_batch_size ({data.rollout_batch_size}) must be a positive multiple of "
             f"worker.actor.global_batch_size ({actor.global_batch_size}): a step's prompts split into whole updates")
    samples = actor.global_batch_size * rollout.n
    _require(samples % world == 0,
             f"worker.actor.global_batch_size x worker.rollout.n = {samples} samples per update must be divisible by "
             f"the {world} data-parallel ranks (trainer.nnodes x trainer.n_gpus_per_node)")
    micro = actor.micro_batch_size_per_device_for_update
    _require(micro >= 1 and (samples // world) % micro == 0,
             f"the {samples // world} samples per rank of an update must be divisible by "
             f"worker.actor.micro_batch_size_per_device_for_update ({micro})")
    _require(actor.micro_batch_size_per_device_for_experience >= 1,
             "worker.actor.micro_batch_size_per_device_for_experience must be >= 1")
    _require(0 < actor.timestep_fraction <= 1,
             f"worker.actor.timestep_fraction ({actor.timestep_fraction}) must be in (0, 1]")
    _require(actor.clip_ratio_low > 0 and actor.clip_ratio_high > 0 and actor.ppo_epochs >= 1,
             "worker.actor.clip_ratio_low / clip_ratio_high must be > 0 and worker.actor.ppo_epochs >= 1")
    _require(actor.lora.rank >= 0 and actor.lora.alpha > 0 and (actor.lora.rank == 0 or actor.lora.target_modules),
             f"worker.actor.lora needs rank >= 0 (0: off), alpha > 0 and target_modules; got {actor.lora}")
    _require(rollout.num_steps >= 1 and rollout.eta > 0 and rollout.shift > 0,
             f"worker.rollout needs num_steps >= 1, eta > 0 (the SDE's noise; eta 0 has no log-probs) and shift > 0; "
             f"got num_steps={rollout.num_steps}, eta={rollout.eta}, shift={rollout.shift}")
    _require(rollout.guidance_scale >= 1, f"worker.rollout.guidance_scale ({rollout.guidance_scale}) must be >= 1")
    _require(min(rollout.height, rollout.width, rollout.num_frames) >= 1,
             "worker.rollout.height, width and num_frames must be >= 1")
    _require(cfg.algorithm.kl_coef >= 0 and cfg.algorithm.adv_clip_max > 0,
             f"algorithm.kl_coef ({cfg.algorithm.kl_coef}) must be >= 0 and algorithm.adv_clip_max "
             f"({cfg.algorithm.adv_clip_max}) > 0")
    _require(reward.reward_type is None or reward.reward_type in REWARD_TYPES,
             f"worker.reward.reward_type={reward.reward_type!r} is not one of {sorted(REWARD_TYPES)}")
    _require(reward.on_error in REWARD_ERROR_POLICIES,
             f"worker.reward.on_error={reward.on_error!r} is not one of {sorted(REWARD_ERROR_POLICIES)}")
    _require(reward.num_workers >= 0, f"worker.reward.num_workers ({reward.num_workers}) must be >= 0")
    _require(reward.timeout_s is None or reward.timeout_s > 0,
             f"worker.reward.timeout_s ({reward.timeout_s}) must be positive, or null for no limit")


# What longrl.config.loader.load_config(..., schema=FLOW_SCHEMA) composes and checks (configs/flow.yaml lists it).
FLOW_SCHEMA = StageSchema("longrl_flow_schema", FlowRootConfig, validate_flow_config, FLOW_UPSTREAM_KEYS.translate,
                          FLOW_UPSTREAM_KEYS.report_unapplied)
