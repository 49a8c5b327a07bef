#!/usr/bin/env bash
# Flow-GRPO on Stable Diffusion 3 (e.g. stable-diffusion-3.5-medium in diffusers layout) with GenEval-style prompts:
#   MODEL_PATH=/models/sd3.5-medium bash examples/sd3_image_grpo.sh PROMPTS.jsonl [key=value ...]
# (environment knobs: run_flow_grpo.sh). 512 px images, 16 SDE samples of 10 steps per prompt at guidance 4.5, LoRA
# rank 32 with the base as the KL reference, rewarded by the GenEval colour / position rules read from each row's
# `include` (longrl.flow.rewards:composition). examples/prompts/geneval_colors.jsonl shows the row format.
PROMPTS=${1:?usage: $0 PROMPTS.jsonl [key=value ...]}
shift
exec bash "$(dirname "$0")/run_flow_grpo.sh" sd3_image_grpo "${PROMPTS}" \
    data.rollout_batch_size=32 \
    worker.rollout.n=16 \
    worker.rollout.height=512 \
    worker.rollout.width=512 \
    worker.rollout.num_frames=1 \
    worker.rollout.guidance_scale=4.5 \
    worker.actor.global_batch_size=16 \
    worker.actor.micro_batch_size_per_device_for_update=8 \
    worker.actor.micro_batch_size_per_device_for_experience=16 \
    worker.actor.optim.lr=3e-4 \
    algorithm.kl_coef=0.04 \
    "$@"
