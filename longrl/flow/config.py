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

    # Training prompt rows: one or several (comma-separated) jsonl files.
    train_files: str = "???"
    # Validation prompt rows, sampled without noise before and after training (null: no validation).
    val_files: Optional[str] = None
    # The row field holding the prompt text; every other field reaches the reward as the row's metadata.
    prompt_key: str = "prompt"
    # Prompts per step; each is sampled worker.rollout.n times.
    rollout_batch_size: int = 8
    # Prompts per validation batch (all at once when not positive).
    val_batch_size: int = -1
    # Shuffle the prompt rows each epoch.
    shuffle: bool = True
    # Seed of the shuffle.
    seed: int = 1


@dataclass
class FlowModelConfig:
    """The generator: a diffusers pipeline directory, how its prompts are encoded, and activation memory."""

    # A diffusers pipeline directory (or hub ID): transformer/, text encoder(s) + tokenizer(s), vae/.
    model_path: str = "???"
    # T5 / UMT5 tokens per prompt (null: the family's pipeline default, 256 for SD3, 512 for Wan).
    max_text_length: Optional[int] = None
    # Recompute the transformer's activations in the backward pass instead of keeping them.
    enable_gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    """LoRA on the transformer (``rank: 0`` trains every weight). The reference is the base (adapters disabled)."""

    # Rank of each adapter (0: no LoRA, every weight trains).
    rank: int = 0
    # Scale of the adapters' update: alpha / rank.
    alpha: float = 64.0
    # The transformer's linear layers that get adapters (module names or their suffixes).
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


@dataclass
class FlowActorConfig:
    """The trained transformer: batch sizes (in prompts and samples), PPO clipping, the trained steps, FSDP, LoRA."""

    # Prompts per optimizer step (x worker.rollout.n samples).
    global_batch_size: int = 8
    # Samples per forward/backward of the update.
    micro_batch_size_per_device_for_update: int = 4
    # Samples per forward of the rollout.
    micro_batch_size_per_device_for_experience: int = 8
    # Gradients are clipped to this global norm (a step whose norm is not finite is skipped).
    max_grad_norm: float = 1.0
    # Lower clip of the per-step ratio; Flow-GRPO clips tightly: a trajectory's steps are many and correlated.
    clip_ratio_low: float = 1.0e-4
    # Upper clip of the per-step ratio.
    clip_ratio_high: float = 1.0e-4
    # Passes of the update over a step's samples.
    ppo_epochs: int = 1
    # The share of each sample's denoising steps the update trains on (a random subset per sample and step).
    timestep_fraction: float = 1.0
    # The generator and how it is loaded.
    model: FlowModelConfig = field(default_factory=FlowModelConfig)
    # The optimizer and its learning-rate schedule (the text stages' keys).
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.0e-4, weight_decay=1.0e-4))
    # The transformer's sharding and precision (the text stages' keys).
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    # The transformer's CPU offload (the text stages' keys).
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    # LoRA adapters instead of a full fine-tune.
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class FlowRolloutConfig:
    """Sampling: ``n`` SDE trajectories per prompt of ``num_steps`` denoising steps, at the media size given."""

    # SDE samples per prompt (the group GRPO normalises over).
    n: int = 8
    # Denoising steps of a sample; each is one action of the policy.
    num_steps: int = 10
    # The SDE's noise level (Flow-GRPO's noise_level); validation samples the ODE (eta 0).
    eta: float = 0.7
    # SD3's timestep shift of the noise schedule.
    shift: float = 3.0
    # Classifier-free guidance (1: off); SD3 is usually sampled at 4.5.
    guidance_scale: float = 1.0
    # Media height in pixels (a multiple of the VAE's scale factor).
    height: int = 512
    # Media width in pixels (a multiple of the VAE's scale factor).
    width: int = 512
    # Frames per sample: 1 for images (SD3); Wan takes 4k + 1.
    num_frames: int = 1
    # Seeds each sample's noise, with the step (a resumed run draws the same samples).
    seed: int = 1


@dataclass
class FlowRewardConfig:
    """A reward function on the generated media, with the project's reward API (``longrl.rewards.loader``)."""

    # "batch" or "sequential"; null: the reward module's REWARD_TYPE, else batch (as EasyR1 decides).
    reward_type: Optional[str] = None
    # The function: "module:fn" or "path/to/file.py:fn".
    reward_function: str = "longrl.flow.rewards:composition"
    # Keyword arguments passed to the function on every call.
    reward_function_kwargs: dict[str, Any] = field(default_factory=dict)
    # "fail" stops the run at a failing reward call; "skip_step" logs the failure and skips that step's update.
    on_error: str = "fail"
    # Processes that run the reward calls (0: a thread of the trainer process); the media are sent to them.
    num_workers: int = 0
    # Seconds one reward call may take (per sample or per batch), past which it fails through on_error; null: no limit.
    timeout_s: Optional[float] = None


@dataclass
class FlowWorkerConfig:
    """The trained transformer, its frozen reference, sampling and the reward."""

    # The trained transformer.
    actor: FlowActorConfig = field(default_factory=FlowActorConfig)
    # The frozen reference of a full fine-tune (with LoRA the base under the adapters is the reference).
    ref: RefConfig = field(default_factory=RefConfig)
    # Sampling of the SDE trajectories.
    rollout: FlowRolloutConfig = field(default_factory=FlowRolloutConfig)
    # The reward on the generated media.
    reward: FlowRewardConfig = field(default_factory=FlowRewardConfig)


@dataclass
class FlowAlgorithmConfig:
    """GRPO over each prompt's samples, and the KL to the reference (``kl_coef: 0`` loads no reference)."""

    # Divide each group's centred scores by their standard deviation.
    norm_adv_by_std_in_grpo: bool = True
    # Advantages are clipped to [-adv_clip_max, adv_clip_max] (Flow-GRPO: 5).
    adv_clip_max: float = 5.0
    # Weight of the KL to the reference in the loss (0: no term, no reference loaded).
    kl_coef: float = 0.04


@dataclass
class FlowRootConfig:
    """A Flow-GRPO run: the prompts, the algorithm, the workers and the trainer."""

    # Prompt rows.
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    # Advantage and KL.
    algorithm: FlowAlgorithmConfig = field(default_factory=FlowAlgorithmConfig)
    # The workers' settings.
    worker: FlowWorkerConfig = field(default_factory=FlowWorkerConfig)
    # Steps, logging, checkpoints and the cluster (the text stages' keys).
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


__all__ = ["FlowActorConfig", "FlowAlgorithmConfig", "FlowDataConfig", "FlowModelConfig", "FlowRewardConfig",
           "FlowRolloutConfig", "FlowRootConfig", "FlowWorkerConfig", "LoraConfig"]
