#!/usr/bin/env bash
# GRPO on long videos with NVILA-Lite-2B (Long-RL's examples/new_supports naming).
#   MODEL_PATH=/models/NVILA-Lite-2B bash examples/nvila_2b_video_grpo.sh VIDEO_DIR [key=value ...]
# MODEL_PATH is a VILA llava_llama directory (config.json, llm/, vision_tower/, mm_projector/; VILA's own code is used
# when the directory carries it). Each frame is 11 x 11 tokens and a "\n" (448 px SigLIP, 3 x 3 projector fold); MR-SP
# over 4 GPUs deals the frames out and shards the prefill. As in Long-RL's VILA recipe only the LLM is trained: the
# frozen tower and projector encode each video once per step. The variables below may be set in the environment;
# key=value arguments override any setting.
set -euo pipefail
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
MODEL_PATH=${MODEL_PATH:-Efficient-Large-Model/NVILA-Lite-2B}
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
    worker.actor.model.freeze_vision_tower=true \
    worker.actor.ulysses_size=4 \
    worker.rollout.num_video_frames=32 \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE}" \
    trainer.experiment_name=nvila_2b_video_grpo \
    "$@"
