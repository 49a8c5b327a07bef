#!/usr/bin/env bash
# GRPO on videos with their sound: Qwen2.5-Omni-3B's thinker sees each video's frames and hears its audio track (or the
# audio file a row names under data.audio_key).
#   bash examples/qwen2_5_omni_3b_grpo.sh VIDEO_DIR [key=value ...]
# MODEL_PATH is a Qwen2.5-Omni checkpoint: the full qwen2_5_omni directory or its thinker alone (only the thinker is
# loaded and trained). A video without an audio track is a bad row (data.on_bad_row=error names it; skip drops it).
# The variables below may be set in the environment; key=value arguments override any setting.
set -euo pipefail
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Omni-3B}
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
    data.use_audio=true \
    data.format_prompt="${HERE}/format_prompt/r1v.jinja" \
    worker.reward.reward_function="${HERE}/reward_function/r1v.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=qwen2_5_omni_3b_grpo \
    "$@"
