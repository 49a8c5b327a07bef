"""The allowed range of every numeric key of the run configuration, checked before the cross-field rules.

A value outside its range either crashes later far from its cause (a zero batch size divides by zero) or silently
changes training (a negative batch size passes a modulo test); so every such key is checked here, and all the
violations are reported together, each with the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import Any, Optional

from longrl.config.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """``low``..``high`` (``None``: unbounded), each end open or closed; ``off``: one extra value with a meaning
    (``-1``: keep all / never); ``nullable``: ``null`` is allowed (the key is then unused or derived)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    off: Optional[int] = None
    nullable: bool = False

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, (list, tuple)):
            return all(self.allows(item) for item in value)
        if value == self.off:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {opening}{_num(self.low)}, {_num(self.high)}{closing}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        extras = ([f"{self.off} (off)"] if self.off is not None else []) + (["null"] if self.nullable else [])
        return " or ".join([*extras, text])


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Range(low=1)  # counts and sizes
NON_NEGATIVE = Range(low=0)
GREATER_THAN_ZERO = Range(low=0, low_open=True)  # real-valued scales
FRACTION = Range(low=0, high=1)
OFF_OR_POSITIVE = Range(low=1, off=-1)
SEED = Range(low=0, high=2**32 - 1)  # numpy's seed range

NUMERIC_RANGES: dict[str, Range] = {
    "data.max_prompt_length": POSITIVE,
    "data.max_response_length": POSITIVE,
    "data.rollout_batch_size": POSITIVE,
    "data.val_batch_size": OFF_OR_POSITIVE,
    "data.seed": SEED,
    "data.mini_rollout_batch_size": Range(low=1, nullable=True),
    "data.max_pixels": POSITIVE,
    "data.min_pixels": POSITIVE,
    "algorithm.gamma": FRACTION,
    "algorithm.kl_coef": NON_NEGATIVE,
    "algorithm.kl_target": GREATER_THAN_ZERO,
    "algorithm.kl_horizon": GREATER_THAN_ZERO,
    "algorithm.filter_low": FRACTION,
    "algorithm.filter_high": FRACTION,
    "algorithm.max_try_make_batch": OFF_OR_POSITIVE,  # -1: no limit on rounds of generation, as in EasyR1
    "algorithm.overlong_buffer_len": NON_NEGATIVE,
    "algorithm.overlong_penalty_factor": NON_NEGATIVE,
    "worker.actor.global_batch_size": POSITIVE,
    "worker.actor.micro_batch_size_per_device_for_update": POSITIVE,
    "worker.actor.micro_batch_size_per_device_for_experience": POSITIVE,
    "worker.actor.max_grad_norm": GREATER_THAN_ZERO,
    "worker.actor.clip_ratio_low": Range(low=0, high=1, high_open=True),  # 0: EasyR1's CISPO script (clip at 1)
    "worker.actor.clip_ratio_high": GREATER_THAN_ZERO,
    "worker.actor.clip_ratio_dual": Range(low=1, low_open=True),
    "worker.actor.tau_positive": GREATER_THAN_ZERO,
    "worker.actor.tau_negative": GREATER_THAN_ZERO,
    "worker.actor.ppo_epochs": POSITIVE,
    "worker.actor.ulysses_size": POSITIVE,
    "worker.actor.optim.lr": NON_NEGATIVE,  # 0 keeps the weights (benchmarks time updates that change nothing)
    "worker.actor.optim.betas": Range(low=0, high=1, high_open=True),
    "worker.actor.optim.weight_decay": NON_NEGATIVE,
    "worker.actor.optim.lr_warmup_ratio": FRACTION,
    "worker.actor.optim.lr_warmup_steps": Range(low=0, nullable=True),
    "worker.actor.optim.min_lr_ratio": Range(low=0, high=1, nullable=True),
    "worker.rollout.n": POSITIVE,
    "worker.rollout.temperature": NON_NEGATIVE,
    "worker.rollout.top_p": Range(low=0, high=1, low_open=True),
    "worker.rollout.top_k": OFF_OR_POSITIVE,
    "worker.rollout.seed": SEED,
    "worker.rollout.gpu_memory_utilization": Range(low=0, high=1, low_open=True),
    "worker.rollout.tensor_parallel_size": POSITIVE,
    "worker.rollout.max_num_batched_tokens": POSITIVE,
    "worker.rollout.num_video_frames": Range(low=1, nullable=True),
    "worker.rollout.fps": Range(low=0, low_open=True, nullable=True),
    "worker.rollout.max_video_frames": POSITIVE,
    "worker.rollout.tokens_per_frame": Range(low=1, nullable=True),
    "worker.rollout.num_chunk_seq": POSITIVE,
    "worker.reward.num_workers": NON_NEGATIVE,
    "worker.reward.judge.temperature": NON_NEGATIVE,
    "worker.reward.judge.max_tokens": POSITIVE,
    "worker.reward.judge.max_concurrency": POSITIVE,
    "worker.reward.judge.timeout_s": GREATER_THAN_ZERO,
    "worker.reward.judge.max_retries": NON_NEGATIVE,
    "worker.reward.judge.backoff_s": NON_NEGATIVE,
    "worker.reward.judge.retry_after_max_s": NON_NEGATIVE,
    "worker.reward.timeout_s": Range(low=0, low_open=True, nullable=True),
    "trainer.collective_timeout_s": GREATER_THAN_ZERO,
    "trainer.total_epochs": POSITIVE,
    "trainer.max_steps": Range(low=1, nullable=True),
    "trainer.nnodes": POSITIVE,
    "trainer.n_gpus_per_node": POSITIVE,
    "trainer.val_freq": OFF_OR_POSITIVE,
    "trainer.val_generations_to_log": NON_NEGATIVE,
    "trainer.save_freq": OFF_OR_POSITIVE,
    "trainer.save_limit": OFF_OR_POSITIVE,
    "quickstart.num_videos": POSITIVE,
    "quickstart.frames": POSITIVE,
    "quickstart.seed": SEED,
}


# The trainer.* keys: every stage shares TrainerConfig (the Flow-GRPO stage checks these too).
TRAINER_RANGES = {key: allowed for key, allowed in NUMERIC_RANGES.items() if key.startswith("trainer.")}


def check_ranges(cfg: Any, ranges: dict[str, Range] = NUMERIC_RANGES) -> None:
    """Raise one :class:`ConfigError` listing every key of ``ranges`` whose value in ``cfg`` is out of range."""
    problems = []
    for key, allowed in ranges.items():
        value = reduce(getattr, key.split("."), cfg)
        if not allowed.allows(value):
            problems.append(f"  {key}={value!r}: allowed {allowed.describe()}")
    if problems:
        raise ConfigError(f"{len(problems)} value(s) out of range:\n" + "\n".join(problems))
