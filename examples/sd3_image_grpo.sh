#!/usr/bin/env bash
# Flow-GRPO on Stable Diffusion 3.5 Medium (diffusers layout) with GenEval-style prompt rows.
#   bash examples/sd3_image_grpo.sh PROMPTS.jsonl [key=value ...]
# examples/prompts/geneval_colors.jsonl shows the row format. 512 px images, 16 SDE samples of 10 steps (noise level
# 0.7, shift 3) per prompt at guidance 4.5, LoRA rank 32 with the base as the KL reference, per-step ratios clipped at
# 1e-4, rewarded by the GenEval colour / position rules read from each row's `include`. The variables below may be set
# in the environment (VAL_FILES: rows sampled without noise before and after training); key=value arguments override
# any setting (the rest comes from configs/flow.yaml).
set -euo pipefail
PROMPTS=${1:?usage: $0 PROMPTS.jsonl [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-stabilityai/stable-diffusion-3.5-medium}
VAL_FILES=${VAL_FILES:-null}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-python3}

"${PYTHON}" -m longrl.flow.main \
    data.train_files="${PROMPTS}" \
    data.val_files="${VAL_FILES}" \
    data.prompt_key=prompt \
    data.rollout_batch_size=32 \
    worker.actor.model.model_path="${MODEL_PATH}" \
    worker.actor.model.enable_gradient_checkpointing=true \
    worker.actor.lora.rank=32 \
    worker.actor.lora.alpha=64 \
    worker.actor.clip_ratio_low=1e-4 \
    worker.actor.clip_ratio_high=1e-4 \
    worker.actor.global_batch_size=16 \
    worker.actor.micro_batch_size_per_device_for_update=8 \
    worker.actor.micro_batch_size_per_device_for_experience=16 \
    worker.actor.optim.lr=3e-4 \
    worker.rollout.n=16 \
    worker.rollout.num_steps=10 \
    worker.rollout.eta=0.7 \
    worker.rollout.shift=3.0 \
    worker.rollout.height=512 \
    worker.rollout.width=512 \
    worker.rollout.num_frames=1 \
    worker.rollout.guidance_scale=4.5 \
    worker.reward.reward_function=longrl.flow.rewards:composition \
    algorithm.kl_coef=0.04 \
    trainer.total_epochs=100 \
    trainer.save_freq=20 \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=sd3_image_grpo \
    "$@"
