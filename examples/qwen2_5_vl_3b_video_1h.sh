#!/usr/bin/env bash
# GRPO on hour-long videos (3,600 frames, one per second) with Qwen2.5-VL-3B on one 8-GPU node.
#   bash examples/qwen2_5_vl_3b_video_1h.sh VIDEO_DIR [key=value ...]
# What makes an hour fit: MR-SP over all 8 GPUs (each encodes 1/8 of the frames and holds 1/8 of the sequence),
# 64 visual tokens per frame (~230k prompt tokens), each prompt scored once for its 8 responses (shared_prefix; a
# micro-batch of 8 rows is one whole group), and the frozen vision tower, whose features are computed once per step
# or read from the embedding cache (set data.cache_dir after running scripts/cache_video_embeds.py).
# The variables below may be set in the environment; key=value arguments override any setting.
set -euo pipefail
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
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
    data.max_prompt_length=262144 \
    data.rollout_batch_size=8 \
    worker.reward.reward_function="${HERE}/reward_function/r1v.py:compute_score" \
    worker.actor.model.model_path="${MODEL_PATH}" \
    worker.actor.model.freeze_vision_tower=true \
    worker.actor.ulysses_size=8 \
    worker.actor.shared_prefix=true \
    worker.actor.global_batch_size=8 \
    worker.actor.micro_batch_size_per_device_for_update=8 \
    worker.actor.micro_batch_size_per_device_for_experience=8 \
    worker.rollout.num_video_frames=3600 \
    worker.rollout.max_video_frames=3600 \
    worker.rollout.tokens_per_frame=64 \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=qwen2_5_vl_3b_video_1h \
    "$@"
