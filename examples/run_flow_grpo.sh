#!/usr/bin/env bash
# The body the Flow-GRPO scripts share (image and video generators, prompts from GenEval-style jsonl rows):
#   bash examples/run_flow_grpo.sh EXPERIMENT_NAME PROMPT_FILE [key=value ...]
# MODEL_PATH (a diffusers pipeline directory: transformer/, text encoder(s) and tokenizer(s), vae/), VAL_FILES (prompt
# rows sampled without noise before and after training; default: none), NNODES, N_GPUS_PER_NODE and PYTHON may be set
# in the environment. Flow-GRPO's recipe is set here (10 SDE steps at noise level 0.7, shift 3, LoRA rank 32 with the
# base as the KL reference, per-step ratios clipped at 1e-4, the GenEval colour / position rules as the reward);
# the calling script adds its model's sizes and rates, and extra arguments override both.
set -euo pipefail
EXPERIMENT=${1:?usage: $0 EXPERIMENT_NAME PROMPT_FILE [key=value ...]}
PROMPTS=${2:?usage: $0 EXPERIMENT_NAME PROMPT_FILE [key=value ...]}
shift 2
MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to a diffusers pipeline directory (SD3 or Wan)}

"${PYTHON:-python3}" -m longrl.flow.main \
    data.train_files="${PROMPTS}" \
    data.val_files="${VAL_FILES:-null}" \
    data.prompt_key=prompt \
    worker.actor.model.model_path="${MODEL_PATH}" \
    worker.rollout.num_steps=10 \
    worker.rollout.eta=0.7 \
    worker.rollout.shift=3.0 \
    worker.actor.model.enable_gradient_checkpointing=true \
    worker.actor.lora.rank=32 \
    worker.actor.lora.alpha=64 \
    worker.actor.clip_ratio_low=1e-4 \
    worker.actor.clip_ratio_high=1e-4 \
    worker.reward.reward_function=longrl.flow.rewards:composition \
    trainer.total_epochs=100 \
    trainer.save_freq=20 \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.experiment_name="${EXPERIMENT}" \
    "$@"
