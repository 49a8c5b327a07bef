#!/usr/bin/env bash
# Flow-GRPO on Wan text-to-video (e.g. Wan2.1-T2V-1.3B in diffusers layout) with GenEval-style prompts:
#   MODEL_PATH=/models/Wan2.1-T2V-1.3B-Diffusers bash examples/wan_video_grpo.sh PROMPTS.jsonl [key=value ...]
# (environment knobs: run_flow_grpo.sh). 33 frames at 240 x 416, 8 SDE samples of 10 steps per prompt at guidance
# 5.0, LoRA rank 32 with the base as the KL reference, half of each sample's steps trained; the colour / position
# rules are judged frame by frame (longrl.flow.rewards:composition). A learned scorer instead:
#   worker.reward.reward_type=batch worker.reward.reward_function=longrl.flow.scorers:clip_score \
#   worker.reward.reward_function_kwargs.model_dir=/models/clip-vit-large-patch14
PROMPTS=${1:?usage: $0 PROMPTS.jsonl [key=value ...]}
shift
exec bash "$(dirname "$0")/run_flow_grpo.sh" wan_video_grpo "${PROMPTS}" \
    data.rollout_batch_size=8 \
    worker.rollout.n=8 \
    worker.rollout.height=240 \
    worker.rollout.width=416 \
    worker.rollout.num_frames=33 \
    worker.rollout.guidance_scale=5.0 \
    worker.actor.global_batch_size=8 \
    worker.actor.micro_batch_size_per_device_for_update=1 \
    worker.actor.micro_batch_size_per_device_for_experience=4 \
    worker.actor.timestep_fraction=0.5 \
    worker.actor.optim.lr=1e-4 \
    algorithm.kl_coef=0.004 \
    "$@"
