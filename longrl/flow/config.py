"""The configuration of a Flow-GRPO run (``python -m longrl.flow.main``), as typed dataclasses.

Key names are EasyR1's where the idea is the same (``data.train_files``, ``data.prompt_key``,
``worker.actor.model.model_path``, ``worker.actor.optim.lr``, ``worker.rollout.n``, ``worker.reward.reward_function``,
``algorithm.kl_coef``, ``trainer.*``), so habits and scripts carry over; the generation-specific keys (denoising
steps, SDE noise level, media size, LoRA) are Flow-GRPO's ideas under those sections. ``trainer.*``, the optimizer
and the FSDP sections are the text stages' own dataclasses: one meaning per key across the project.
Defaults live in ``configs/flow.yaml``; cross-field rules in :mod:`longrl.flow.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from longrl.config.schema import FSDPConfig, OffloadConfig, OptimConfig, RefConfig, TrainerConfig


@dataclass
class FlowDataConfig:
    """Prompt rows from jsonl files in GenEval's metadata style (:mod:`longrl.flow.prompts`)."""

    train_files: str = "???"
    val_files: Optional[str] = None
    prompt_key: str = "prompt"
    rollout_batch_size: int = 8  # prompts per step; each is sampled worker.rollout.n times
    val_batch_size: int = -1  # prompts per validation batch (all at once when not positive)
    shuffle: bool = True
    seed: int = 1


@dataclass
class FlowModelConfig:
    model_path: str = "???"  # a diffusers pipeline directory: transformer/, text encoder(s) + tokenizer(s), vae/
    # T5 / UMT5 tokens per prompt (None: the family's pipeline default, 256 for SD3, 512 for Wan).
    max_text_length: Optional[int] = None
    enable_gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    """LoRA on the transformer (``rank: 0`` trains every weight). The reference is the base (adapters disabled)."""

    rank: int = 0
    alpha: float = 64.0
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


@dataclass
class FlowActorConfig:
    """The trained transformer: batch sizes (in prompts and samples), PPO clipping, the trained steps, FSDP, LoRA."""

    global_batch_size: int = 8  # prompts per optimizer step (x worker.rollout.n samples)
    micro_batch_size_per_device_for_update: int = 4  # samples per forward/backward of the update
    micro_batch_size_per_device_for_experience: int = 8  # samples per forward of the rollout
    max_grad_norm: float = 1.0
    # Flow-GRPO clips the per-step ratio tightly: a trajectory's steps are many and correlated.
    clip_ratio_low: float = 1.0e-4
    clip_ratio_high: float = 1.0e-4
    ppo_epochs: int = 1
    # The share of each sample's denoising steps the update trains on (a random subset per sample and step).
    timestep_fraction: float = 1.0
    model: FlowModelConfig = field(default_factory=FlowModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.0e-4, weight_decay=1.0e-4))
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class FlowRolloutConfig:
    """Sampling: ``n`` SDE trajectories per prompt of ``num_steps`` denoising steps, at the media size given."""

    n: int = 8
    num_steps: int = 10
    eta: float = 0.7  # the SDE's noise level (Flow-GRPO's noise_level); validation samples the ODE (eta 0)
    shift: float = 3.0  # SD3's timestep shift of the noise schedule
    guidance_scale: float = 1.0  # classifier-free guidance (1: off); SD3 is usually sampled at 4.5
    height: int = 512
    width: int = 512
    num_frames: int = 1  # 1 for images (SD3); Wan takes 4k + 1
    seed: int = 1


@dataclass
class FlowRewardConfig:
    """A reward function on the generated media, with the project's reward API (``longrl.rewards.loader``)."""

    # "batch" or "sequential"; null: the reward module's REWARD_TYPE, else batch (as EasyR1 decides)
    reward_type: Optional[str] = None
    reward_function: str = "longrl.flow.rewards:composition"
    reward_function_kwargs: dict[str, Any] = field(default_factory=dict)
    # "fail" stops the run at a failing reward call; "skip_step" logs the failure and skips that step's update.
    on_error: str = "fail"
    # Processes that run the reward calls (0: a thread of the trainer process); the media are sent to them.
    num_workers: int = 0
    # Seconds one reward call may take (per sample, or per batch for a batch function); past it the call fails
    # naming the sample, through on_error. Applied with num_workers >= 1; null: no limit.
    timeout_s: Optional[float] = None


@dataclass
class FlowWorkerConfig:
    actor: FlowActorConfig = field(default_factory=FlowActorConfig)
    ref: RefConfig = field(default_factory=RefConfig)  # the frozen reference of a full fine-tune (not with LoRA)
    rollout: FlowRolloutConfig = field(default_factory=FlowRolloutConfig)
    reward: FlowRewardConfig = field(default_factory=FlowRewardConfig)


@dataclass
class FlowAlgorithmConfig:
    """GRPO over each prompt's samples, and the KL to the reference (``kl_coef: 0`` loads no reference)."""

    norm_adv_by_std_in_grpo: bool = True
    adv_clip_max: float = 5.0
    kl_coef: float = 0.04


@dataclass
class FlowRootConfig:
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    algorithm: FlowAlgorithmConfig = field(default_factory=FlowAlgorithmConfig)
    worker: FlowWorkerConfig = field(default_factory=FlowWorkerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


__all__ = ["FlowActorConfig", "FlowAlgorithmConfig", "FlowDataConfig", "FlowModelConfig", "FlowRewardConfig",
           "FlowRolloutConfig", "FlowRootConfig", "FlowWorkerConfig", "LoraConfig"]
