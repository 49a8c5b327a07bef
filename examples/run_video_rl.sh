#!/usr/bin/env bash
# The body every per-model, per-algorithm video script shares:
#   bash examples/run_video_rl.sh ALGORITHM EXPERIMENT_NAME VIDEO_DIR [key=value ...]
# VIDEO_DIR holds the videos the dataset's relative paths point into; MODEL_PATH, TRAIN_FILES, VAL_FILES, NNODES,
# N_GPUS_PER_NODE and PYTHON may be set in the environment. The reward is examples/reward_function/r1v.py and the prompt
# examples/format_prompt/r1v.jinja (found next to this script, so it runs from any directory). Extra arguments are
# passed on as overrides.
set -euo pipefail
ALGORITHM=${1:?algorithm}
EXPERIMENT=${2:?experiment name}
VIDEO_DIR=${3:?usage: $0 ALGORITHM EXPERIMENT_NAME VIDEO_DIR [key=value ...]}
shift 3
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-LongVideo-Reason/longvideo-reason@train}
VAL_FILES=${VAL_FILES:-LongVideo-Reason/longvideo-reason@validation}

"${PYTHON:-python3}" -m longrl.trainer.main \
    config="${HERE}/config.yaml" \
    algorithm="${ALGORITHM}" \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    data.video_dir="${VIDEO_DIR}" \
    data.format_prompt="${HERE}/format_prompt/r1v.jinja" \
    worker.reward.reward_function="${HERE}/reward_function/r1v.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.experiment_name="${EXPERIMENT}" \
    "$@"
