#!/usr/bin/env bash
# GRPO on long videos with Qwen2.5-VL-3B (Long-RL's examples/new_supports naming).
#   bash examples/qwen2_5_vl_3b_video_grpo.sh VIDEO_DIR [key=value ...]   (environment knobs: run_video_rl.sh)
exec bash "$(dirname "$0")/run_video_rl.sh" grpo qwen2_5_vl_3b_video_grpo "$@"
