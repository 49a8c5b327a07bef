#!/usr/bin/env bash
# GRPO on hour-long videos (3,600 frames, one per second) with Qwen2.5-VL-3B on one 8-GPU node.
#   bash examples/qwen2_5_vl_3b_video_1h.sh VIDEO_DIR [key=value ...]   (environment knobs: run_video_rl.sh)
# What makes an hour fit: MR-SP over all 8 GPUs (each encodes 1/8 of the frames and holds 1/8 of the sequence),
# 64 visual tokens per frame (~230k prompt tokens), each prompt scored once for its 8 responses (shared_prefix; a
# micro-batch of 8 rows is one whole group), and the frozen vision tower, whose features are computed once per step
# or read from the embedding cache (set data.cache_dir after running scripts/cache_video_embeds.py).
# Arguments after VIDEO_DIR override these settings.
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
exec bash "$(dirname "$0")/run_video_rl.sh" grpo qwen2_5_vl_3b_video_1h "${VIDEO_DIR}" \
    worker.rollout.num_video_frames=3600 \
    worker.rollout.max_video_frames=3600 \
    worker.rollout.tokens_per_frame=64 \
    worker.actor.ulysses_size=8 \
    worker.actor.shared_prefix=true \
    worker.actor.model.freeze_vision_tower=true \
    worker.actor.micro_batch_size_per_device_for_update=8 \
    worker.actor.micro_batch_size_per_device_for_experience=8 \
    data.max_prompt_length=262144 \
    data.rollout_batch_size=8 \
    worker.actor.global_batch_size=8 \
    "$@"
