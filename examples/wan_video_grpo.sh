#!/usr/bin/env bash
# Flow-GRPO on Wan2.1 text-to-video 1.3B (diffusers layout) with GenEval-style prompt rows.
#   bash examples/wan_video_grpo.sh PROMPTS.jsonl [key=value ...]
# 33 frames at 240 x 416, 8 SDE samples of 10 steps (noise level 0.7, shift 3) per prompt at guidance 5.0, LoRA rank 32
# with the base as the KL reference, half of each sample's steps trained, per-step ratios clipped at 1e-4; the colour /
# position rules are judged frame by frame. A learned scorer instead:
#   worker.reward.reward_type=batch worker.reward.reward_function=longrl.flow.scorers:clip_score \
#   worker.reward.reward_function_kwargs.model_dir=/models/clip-vit-large-patch14
# The variables below may be set in the environment (VAL_FILES: rows sampled without noise before and after
# training); key=value arguments override any setting (the rest comes from configs/flow.yaml).
set -euo pipefail
PROMPTS=${1:?usage: $0 PROMPTS.jsonl [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Wan-AI/Wan2.1-T2V-1.3B-Diffusers}
VAL_FILES=${VAL_FILES:-null}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-python3}

"${PYTHON}" -m longrl.flow.main \
    data.train_files="${PROMPTS}" \
    data.val_files="${VAL_FILES}" \
    data.prompt_key=prompt \
    data.rollout_batch_size=8 \
    worker.actor.model.model_path="${MODEL_PATH}" \
    worker.actor.model.enable_gradient_checkpointing=true \
    worker.actor.lora.rank=32 \
    worker.actor.lora.alpha=64 \
    worker.actor.clip_ratio_low=1e-4 \
    worker.actor.clip_ratio_high=1e-4 \
    worker.actor.global_batch_size=8 \
    worker.actor.micro_batch_size_per_device_for_update=1 \
    worker.actor.micro_batch_size_per_device_for_experience=4 \
    worker.actor.timestep_fraction=0.5 \
    worker.actor.optim.lr=1e-4 \
    worker.rollout.n=8 \
    worker.rollout.num_steps=10 \
    worker.rollout.eta=0.7 \
    worker.rollout.shift=3.0 \
    worker.rollout.height=240 \
    worker.rollout.width=416 \
    worker.rollout.num_frames=33 \
    worker.rollout.guidance_scale=5.0 \
    worker.reward.reward_function=longrl.flow.rewards:composition \
    algorithm.kl_coef=0.004 \
    trainer.total_epochs=100 \
    trainer.save_freq=20 \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=wan_video_grpo \
    "$@"
