#!/usr/bin/env bash
# GRPO on long videos with NVILA-Lite-2B (Long-RL's examples/new_supports naming).
#   MODEL_PATH=/models/NVILA-Lite-2B bash examples/nvila_2b_video_grpo.sh VIDEO_DIR [key=value ...]
# MODEL_PATH is a VILA llava_llama directory (config.json, llm/, vision_tower/, mm_projector/; VILA's own code is used
# when the directory carries it). Each frame is 11 x 11 tokens and a "\n" (448 px SigLIP, 3 x 3 projector fold); MR-SP
# over 4 GPUs deals the frames out and shards the prefill. As in Long-RL's VILA recipe only the LLM is trained: the
# frozen tower and projector encode each video once per step. Other knobs: run_video_rl.sh. Arguments after VIDEO_DIR
# override these settings.
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
export MODEL_PATH=${MODEL_PATH:-Efficient-Large-Model/NVILA-Lite-2B}
exec bash "$(dirname "$0")/run_video_rl.sh" grpo nvila_2b_video_grpo "${VIDEO_DIR}" \
    worker.rollout.num_video_frames=32 \
    worker.actor.ulysses_size=4 \
    worker.actor.model.freeze_vision_tower=true \
    "$@"
