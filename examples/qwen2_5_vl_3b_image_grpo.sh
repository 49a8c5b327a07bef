#!/usr/bin/env bash
# GRPO on image questions (one or several images per row, EasyR1's `images` key) with Qwen2.5-VL-3B.
#   bash examples/qwen2_5_vl_3b_image_grpo.sh IMAGE_DIR [key=value ...]
# IMAGE_DIR holds the images the rows' relative paths point into; MR-SP encodes each image as one slice. The variables
# below may be set in the environment; key=value arguments override any setting.
set -euo pipefail
IMAGE_DIR=${1:?usage: $0 IMAGE_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-hiyouga/geometry3k@train}
VAL_FILES=${VAL_FILES:-hiyouga/geometry3k@test}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)  # config, prompt and reward sit beside this script: it runs from any directory

"${PYTHON}" -m longrl.trainer.main \
    config="${HERE}/config.yaml" \
    algorithm=grpo \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    data.video_dir="${IMAGE_DIR}" \
    data.image_key=images \
    data.max_prompt_length=4096 \
    data.format_prompt="${HERE}/format_prompt/r1v.jinja" \
    worker.reward.reward_function="${HERE}/reward_function/r1v.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=qwen2_5_vl_3b_image_grpo \
    "$@"
