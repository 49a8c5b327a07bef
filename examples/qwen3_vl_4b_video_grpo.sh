#!/usr/bin/env bash
# GRPO on long videos with Qwen3-VL-4B (dense): its frames carry their timestamps in the prompt, and its tower's
# deepstack features ride with the merged ones through MR-SP, the rollout and the embedding cache.
#   bash examples/qwen3_vl_4b_video_grpo.sh VIDEO_DIR [key=value ...]
# VIDEO_DIR holds the videos the rows' relative paths point into; the variables below may be set in the environment and
# key=value arguments override any setting (the rest comes from config.yaml).
set -euo pipefail
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-VL-4B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-LongVideo-Reason/longvideo-reason@train}
VAL_FILES=${VAL_FILES:-LongVideo-Reason/longvideo-reason@validation}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)  # config, prompt and reward sit beside this script: it runs from any directory

"${PYTHON}" -m longrl.trainer.main \
    config="${HERE}/config.yaml" \
    algorithm=grpo \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    data.video_dir="${VIDEO_DIR}" \
    data.format_prompt="${HERE}/format_prompt/r1v.jinja" \
    worker.reward.reward_function="${HERE}/reward_function/r1v.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=qwen3_vl_4b_video_grpo \
    "$@"
