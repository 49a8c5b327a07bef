"""Keys of Long-RL's diffusion configs (``config_diffusion.yaml``, ``config_video_diffusion.yaml``) for Flow-GRPO.

Those files start from Long-RL's text-model config, so most of their keys are about language-model sampling, prompt
lengths or vLLM and mean nothing to a diffusion stage; :data:`FLOW_UPSTREAM_KEYS` names what each becomes here (the
rule: :mod:`longrl.config.upstream_keys`).
"""

from __future__ import annotations

from longrl.config.upstream import NOT_APPLIED
from longrl.config.upstream_keys import UpstreamKeys, same_value

__all__ = ["FLOW_UPSTREAM_KEYS"]

_MARKER = "the entry point (longrl.flow.main) already says the run is a diffusion run"
_TEXT_ONLY = "a key of the text stages; a prompt row for Flow-GRPO is its prompt (data.prompt_key) and metadata"
_NO_VLLM = "Flow-GRPO samples with the diffusers pipeline, not a language-model engine"
_ORIGINAL_PARAMETERS = "longrl's FSDP (fully_shard) always trains the original parameters"
_ONE_GUIDANCE = "Flow-GRPO uses worker.rollout.guidance_scale for sampling and for the trained log-probs alike"

_NOT_NEEDED = {
    **{f"{section}.diffusion": _MARKER
       for section in ("data", "worker.actor", "worker.rollout", "worker.ref", "worker.reward", "trainer")},
    **{f"data.{key}": _TEXT_ONLY
       for key in ("answer_key", "image_key", "image_dir", "max_prompt_length", "max_response_length",
                   "format_prompt", "override_chat_template", "min_pixels", "max_pixels", "filter_overlong_prompts")},
    **{f"worker.rollout.{key}": _NO_VLLM
       for key in ("temperature", "top_p", "gpu_memory_utilization", "enforce_eager", "enable_chunked_prefill",
                   "tensor_parallel_size", "limit_images", "trust_remote_code")},
    "worker.rollout.val_override_config": "validation samples the deterministic ODE (eta 0), one sample per prompt",
    "worker.actor.guidance_scale": _ONE_GUIDANCE,
    "worker.ref.guidance_scale": _ONE_GUIDANCE,
    "worker.ref.scheduler": "the scheduler is read from the pipeline directory (worker.actor.model.model_path)",
    "worker.actor.padding_free": "diffusion latents have no padding",
    "worker.actor.fsdp.use_orig_params": _ORIGINAL_PARAMETERS,
    "worker.ref.fsdp.use_orig_params": _ORIGINAL_PARAMETERS,
    "worker.actor.model.freeze_vision_tower": "a diffusion pipeline has no vision tower",
    "worker.actor.model.trust_remote_code": "the pipeline's classes are diffusers' own; no model code is run",
    "algorithm.filter_key": "online filtering is off (algorithm.online_filtering)",
    "algorithm.filter_low": "online filtering is off (algorithm.online_filtering)",
    "algorithm.filter_high": "online filtering is off (algorithm.online_filtering)",
    "trainer.max_try_make_batch": "online filtering is off (algorithm.online_filtering)",
}

_NOT_IMPLEMENTED = {
    "algorithm.adv_estimator": (("grpo",), "Flow-GRPO's advantage is GRPO's"),
    "algorithm.disable_kl": ((False,), "set algorithm.kl_coef=0 to train without the KL term"),
    "algorithm.use_kl_loss": ((True,), "the KL to the reference is a loss term (algorithm.kl_coef)"),
    "algorithm.kl_penalty": (("flow_grpo",), "the KL is Flow-GRPO's, between the SDE steps' Gaussians"),
    "worker.actor.kl_penalty": (("flow_grpo",), "the KL is Flow-GRPO's, between the SDE steps' Gaussians"),
    "algorithm.online_filtering": ((False,), "DAPO's group filter is not implemented for Flow-GRPO"),
    "worker.actor.ulysses_size": ((1,), "sequence parallelism is not implemented for Flow-GRPO"),
    "worker.ref.ulysses_size": ((1,), "sequence parallelism is not implemented for Flow-GRPO"),
    "worker.actor.loss_avg_mode": (("seq",), "the loss averages each sample's trained steps, then the samples"),
    "worker.rollout.kl_reward": ((0, 0.0), "a KL term in the reward is not implemented (use algorithm.kl_coef)"),
    "data.mini_rollout_batch_size": ((None,), "generation rounds are for online filtering, which Flow-GRPO lacks"),
    "trainer.save_model_only": ((False,), "Flow-GRPO checkpoints always hold the optimizer state"),
}

_RENAMED = {
    "worker.rollout.resolution": (("worker.rollout.height", "worker.rollout.width"), same_value),
}

# The optimizer and FSDP sections are the text stages' own, built by the same code: what they do not apply, neither
# does Flow-GRPO. Rank-0 initialisation is the text stages' loading only: the Flow-GRPO worker loads its transformer
# on every rank.
_EVERY_RANK_LOADS = "every rank loads the pipeline's transformer itself (rank-0 init is the text stages' only)"
_NOT_APPLIED = {**{key: entry for key, entry in NOT_APPLIED.items()
                   if key.startswith(("worker.actor.optim.", "worker.actor.fsdp.", "worker.actor.offload.",
                                      "worker.ref."))},
                "worker.actor.fsdp.enable_rank0_init": (False, _EVERY_RANK_LOADS),
                "worker.ref.fsdp.enable_rank0_init": (False, _EVERY_RANK_LOADS)}

FLOW_UPSTREAM_KEYS = UpstreamKeys(_RENAMED, _NOT_NEEDED, _NOT_IMPLEMENTED, _NOT_APPLIED)
