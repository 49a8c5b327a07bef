#!/usr/bin/env bash
# REINFORCE on long videos with Qwen2.5-VL-3B (Long-RL's examples/new_supports naming).
#   bash examples/qwen2_5_vl_3b_video_reinforce.sh VIDEO_DIR [key=value ...]   (environment knobs: run_video_rl.sh)
exec bash "$(dirname "$0")/run_video_rl.sh" reinforce qwen2_5_vl_3b_video_reinforce "$@"
