#!/usr/bin/env bash
# GRPO on long videos with LongVILA-7B (Long-RL's examples/new_supports naming).
#   MODEL_PATH=/models/LongVILA-7B bash examples/longvila_7b_video_grpo.sh VIDEO_DIR [key=value ...]
# MODEL_PATH is a VILA llava_llama directory (config.json, llm/, vision_tower/, mm_projector/; VILA's own code is used
# when the directory carries it). Each frame is 16 x 16 tokens and a "\n" (448 px SigLIP, 2 x 2 projector fold), so 256
# frames are a ~66k-token prompt; MR-SP over 4 GPUs deals the frames out and shards the prefill. As in Long-RL's VILA
# recipe only the LLM is trained: the frozen tower and projector encode each video once per step. Other knobs:
# run_video_rl.sh. Arguments after VIDEO_DIR override these settings.
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
export MODEL_PATH=${MODEL_PATH:-Efficient-Large-Model/LongVILA-7B}
exec bash "$(dirname "$0")/run_video_rl.sh" grpo longvila_7b_video_grpo "${VIDEO_DIR}" \
    worker.rollout.num_video_frames=256 \
    worker.actor.ulysses_size=4 \
    worker.actor.model.freeze_vision_tower=true \
    data.max_prompt_length=73728 \
    "$@"
