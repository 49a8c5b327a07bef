"""Cross-field rules of the run configuration, checked at start so a bad combination fails before any work.

Each rule's message states the rule and the values that broke it, so the fix is obvious from the error alone.
"""

from __future__ import annotations

import re

from longrl.config.choices import REWARD_KINDS, REWARD_TYPES, ROLLOUT_ENGINES
from longrl.config.errors import ConfigError
from longrl.config.ranges import check_ranges
from longrl.config.schema import RootConfig

ROLLOUT_PROMPT_INPUTS = ("multi_modal", "embeds")
BAD_ROW_POLICIES = ("error", "skip")
KL_CONTROLLERS = ("fixed", "adaptive")
REWARD_ERROR_POLICIES = ("fail", "skip_step")
JUDGE_OUTAGE_POLICIES = ("zero", "fail")
RESUME_MISMATCH_POLICIES = ("error", "allow")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _one_of(value: str, valid: tuple[str, ...] | list[str], key: str) -> None:
    _require(value in valid, f"{key}={value!r} is not one of {sorted(valid)}")


def validate_config(cfg: RootConfig) -> None:
    """Raise :class:`ConfigError` listing every value out of its range (:mod:`longrl.config.ranges`), else naming
    the first cross-field rule that ``cfg`` breaks."""
    check_ranges(cfg)
    _validate_batches(cfg)
    _validate_video_sampling(cfg)
    _validate_algorithm(cfg)
    _validate_lora(cfg)
    data, rollout = cfg.data, cfg.worker.rollout
    _one_of(rollout.name, list(ROLLOUT_ENGINES), "worker.rollout.name")
    _one_of(cfg.worker.reward.kind, list(REWARD_KINDS), "worker.reward.kind")
    if cfg.worker.reward.reward_type is not None:
        _one_of(cfg.worker.reward.reward_type, REWARD_TYPES, "worker.reward.reward_type")
    _one_of(data.on_bad_row, BAD_ROW_POLICIES, "data.on_bad_row")
    _one_of(cfg.worker.reward.on_error, REWARD_ERROR_POLICIES, "worker.reward.on_error")
    judge = cfg.worker.reward.judge
    _one_of(judge.on_outage, JUDGE_OUTAGE_POLICIES, "worker.reward.judge.on_outage")
    _one_of(cfg.trainer.resume_mismatch, RESUME_MISMATCH_POLICIES, "trainer.resume_mismatch")
    _require(data.min_pixels <= data.max_pixels,
             f"data.min_pixels ({data.min_pixels}) must be at most data.max_pixels ({data.max_pixels})")
    _one_of(rollout.prompt_input, ROLLOUT_PROMPT_INPUTS, "worker.rollout.prompt_input")
    cached = cfg.worker.actor.cached_embeds_dir
    _require(not (data.cache_dir and cached) or data.cache_dir == cached,
             f"data.cache_dir ({data.cache_dir}) and worker.actor.cached_embeds_dir ({cached}) name the same cache; "
             "set one, or both to the same directory")
    _require(not (data.cache_dir or cached) or cfg.worker.actor.model.freeze_vision_tower,
             "the embedding cache (data.cache_dir / worker.actor.cached_embeds_dir) holds a frozen vision tower's "
             "features; it cannot serve worker.actor.model.freeze_vision_tower=false")
    tp, sp = rollout.tensor_parallel_size, cfg.worker.actor.ulysses_size
    # A tensor-parallel engine's ranks must generate from the same prompts; only the ranks of one sequence-parallel
    # group are sent the same share of the batch.
    _require(sp % tp == 0,
             f"worker.rollout.tensor_parallel_size ({tp}) must divide worker.actor.ulysses_size ({sp})")


def _validate_lora(cfg: RootConfig) -> None:
    """``worker.actor.model.lora``: a rank, a positive alpha, target names and an exclusion regex that compiles
    (whether they match any module is known only once the model is built: the worker raises then, naming the key)."""
    lora = cfg.worker.actor.model.lora
    key = "worker.actor.model.lora"
    _require(lora.rank >= 0, f"{key}.rank ({lora.rank}) must be >= 0 (0 turns LoRA off)")
    if lora.rank == 0:
        return
    _require(lora.alpha > 0, f"{key}.alpha ({lora.alpha}) must be > 0 (the adapters are scaled by alpha / rank)")
    _require(any(name.strip() for name in lora.target_modules.split(",")),
             f"{key}.target_modules ({lora.target_modules!r}) names no module; use all-linear or names such as "
             "q_proj,v_proj")
    if lora.exclude_modules:
        try:
            re.compile(lora.exclude_modules)
        except re.error as exc:
            raise ConfigError(f"{key}.exclude_modules ({lora.exclude_modules!r}) is not a regular expression: "
                              f"{exc}; e.g. '.*visual.*' leaves the vision tower without adapters") from exc


def _validate_batches(cfg: RootConfig) -> None:
    data, actor, trainer = cfg.data, cfg.worker.actor, cfg.trainer
    n = cfg.worker.rollout.n
    world = trainer.nnodes * trainer.n_gpus_per_node
    _require(
        world % actor.ulysses_size == 0,
        f"the world size trainer.nnodes x trainer.n_gpus_per_node = {world} must be divisible by "
        f"worker.actor.ulysses_size ({actor.ulysses_size})",
    )
    dp = world // actor.ulysses_size
    _require(
        data.rollout_batch_size % actor.global_batch_size == 0,
        f"data.rollout_batch_size ({data.rollout_batch_size}) must be a multiple of worker.actor.global_batch_size "
        f"({actor.global_batch_size}): each step's prompts are split into whole update batches",
    )
    samples_per_update = actor.samples_per_update
    _require(
        samples_per_update % dp == 0,
        f"worker.actor.global_batch_size x worker.rollout.n = {samples_per_update} samples per update must be "
        f"divisible by the {dp} data-parallel ranks (world {world} / ulysses_size {actor.ulysses_size})",
    )
    per_rank = samples_per_update // dp
    micro = actor.micro_batch_size_per_device_for_update
    _require(
        per_rank % micro == 0,
        f"the global batch of {samples_per_update} samples (worker.actor.global_batch_size "
        f"{actor.global_batch_size} x worker.rollout.n {n}) gives {per_rank} per data-parallel rank, which must be "
        f"divisible by worker.actor.micro_batch_size_per_device_for_update ({micro})",
    )


def _validate_video_sampling(cfg: RootConfig) -> None:
    rollout = cfg.worker.rollout
    _require(
        (rollout.num_video_frames is None) != (rollout.fps is None),
        "set exactly one of worker.rollout.num_video_frames (a fixed frame count) and worker.rollout.fps "
        f"(frames per second, capped by worker.rollout.max_video_frames); got num_video_frames="
        f"{rollout.num_video_frames}, fps={rollout.fps}",
    )


def _validate_algorithm(cfg: RootConfig) -> None:
    from longrl.algos.advantages import ADVANTAGE_ESTIMATORS
    from longrl.algos.kl import KL_ESTIMATORS
    from longrl.algos.aggregation import LOSS_AGG_MODES
    from longrl.algos.policy_loss import POLICY_LOSS_TYPES
    from longrl.config.choices import OPTIMIZER_STRATEGIES

    algo, actor = cfg.algorithm, cfg.worker.actor
    _one_of(algo.adv_estimator, list(ADVANTAGE_ESTIMATORS), "algorithm.adv_estimator")
    _one_of(algo.kl_penalty, list(KL_ESTIMATORS), "algorithm.kl_penalty")
    _one_of(algo.kl_type, KL_CONTROLLERS, "algorithm.kl_type")
    _one_of(actor.loss_agg_mode, list(LOSS_AGG_MODES), "worker.actor.loss_agg_mode")
    _one_of(actor.loss_type, list(POLICY_LOSS_TYPES), "worker.actor.loss_type")
    _one_of(actor.optim.strategy, list(OPTIMIZER_STRATEGIES), "worker.actor.optim.strategy")
    _require(
        algo.filter_low < algo.filter_high,
        f"algorithm.filter_low ({algo.filter_low}) must be below algorithm.filter_high ({algo.filter_high})",
    )
    _require(
        algo.overlong_buffer_len < cfg.data.max_response_length,
        f"algorithm.overlong_buffer_len ({algo.overlong_buffer_len}) must be below data.max_response_length "
        f"({cfg.data.max_response_length})",
    )
    _validate_one_overlong_penalty(cfg)


def _validate_one_overlong_penalty(cfg: RootConfig) -> None:
    """One overlong penalty per sample. Long-RL's ``dapo.py`` reward applies DAPO's soft overlong punishment itself,
    declared by its ``overlong_buffer_length`` / ``overlong_penalty_factor`` arguments (given through
    ``reward_function_kwargs``); ``algorithm.overlong_buffer_len`` adds longrl's own to the same ``overall``. Both
    on would punish a long response twice, so that combination is refused with both keys named."""
    algo, kwargs = cfg.algorithm, cfg.worker.reward.reward_function_kwargs
    ours = algo.overlong_buffer_len > 0 and algo.overlong_penalty_factor != 0
    theirs = (kwargs.get("overlong_buffer_length") or 0) > 0 and kwargs.get("overlong_penalty_factor", 1.0) != 0
    _require(
        not (ours and theirs),
        "the overlong penalty is on twice: the reward function applies its own (worker.reward.reward_function_kwargs"
        f".overlong_buffer_length={kwargs.get('overlong_buffer_length')}, as Long-RL's dapo.py does) and "
        f"algorithm.overlong_buffer_len={algo.overlong_buffer_len} adds longrl's (algorithm=dapo turns it on). Keep "
        "one: algorithm.overlong_buffer_len=0 to keep the reward file's, or "
        "worker.reward.reward_function_kwargs.overlong_penalty_factor=0 to keep longrl's",
    )
