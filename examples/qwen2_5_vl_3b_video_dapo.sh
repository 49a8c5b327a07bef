#!/usr/bin/env bash
# DAPO on long videos with Qwen2.5-VL-3B (Long-RL's examples/new_supports naming).
#   bash examples/qwen2_5_vl_3b_video_dapo.sh VIDEO_DIR [key=value ...]
# VIDEO_DIR holds the videos the dataset's relative paths point into; MODEL_PATH, TRAIN_FILES, VAL_FILES,
# NNODES, N_GPUS_PER_NODE and PYTHON may be set in the environment. Extra arguments are passed on as overrides.
set -euo pipefail
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-LongVideo-Reason/longvideo-reason@train}
VAL_FILES=${VAL_FILES:-LongVideo-Reason/longvideo-reason@validation}

"${PYTHON:-python3}" -m longrl.trainer.main \
    config="$(dirname "$0")/config.yaml" \
    algorithm=dapo \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    data.video_dir="${VIDEO_DIR}" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.experiment_name=qwen2_5_vl_3b_video_dapo \
    "$@"
