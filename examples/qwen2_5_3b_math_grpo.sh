#!/usr/bin/env bash
# GRPO on math word problems with Qwen2.5-3B-Instruct (text rows: problem + answer).
#   bash examples/qwen2_5_3b_math_grpo.sh [key=value ...]
# The reward is reward_function/math.py (think, then \boxed{}), the prompt format_prompt/math.jinja. The variables below
# may be set in the environment; key=value arguments override any setting (the rest comes from config.yaml).
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-3B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-hiyouga/math12k@train}
VAL_FILES=${VAL_FILES:-hiyouga/math12k@test}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)  # config, prompt and reward sit beside this script: it runs from any directory

"${PYTHON}" -m longrl.trainer.main \
    config="${HERE}/config.yaml" \
    algorithm=grpo \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    data.max_prompt_length=2048 \
    data.format_prompt="${HERE}/format_prompt/math.jinja" \
    worker.reward.reward_type=batch \
    worker.reward.reward_function="${HERE}/reward_function/math.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=qwen2_5_3b_math_grpo \
    "$@"
