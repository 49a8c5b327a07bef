#!/usr/bin/env bash
# The body the per-model math scripts share (text rows: problem + answer, no video):
#   bash examples/run_math_rl.sh ALGORITHM EXPERIMENT_NAME [key=value ...]
# MODEL_PATH, TRAIN_FILES, VAL_FILES, NNODES, N_GPUS_PER_NODE and PYTHON may be set in the environment. The reward is
# examples/reward_function/math.py (think, then \boxed{}), the prompt examples/format_prompt/math.jinja. Extra
# arguments are passed on as overrides.
set -euo pipefail
ALGORITHM=${1:?algorithm}
EXPERIMENT=${2:?usage: $0 ALGORITHM EXPERIMENT_NAME [key=value ...]}
shift 2
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to the model directory}

"${PYTHON:-python3}" -m longrl.trainer.main \
    config="${HERE}/config.yaml" \
    algorithm="${ALGORITHM}" \
    data.train_files="${TRAIN_FILES:-hiyouga/math12k@train}" \
    data.val_files="${VAL_FILES:-hiyouga/math12k@test}" \
    data.max_prompt_length=2048 \
    data.format_prompt="${HERE}/format_prompt/math.jinja" \
    worker.reward.reward_type=batch \
    worker.reward.reward_function="${HERE}/reward_function/math.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.experiment_name="${EXPERIMENT}" \
    "$@"
