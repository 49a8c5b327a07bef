#!/usr/bin/env bash
# GRPO on videos with their sound: Qwen2.5-Omni-3B's thinker sees each video's frames and hears its audio track (or the
# audio file a row names under data.audio_key).
#   bash examples/qwen2_5_omni_3b_grpo.sh VIDEO_DIR [key=value ...]   (environment knobs: run_video_rl.sh)
# MODEL_PATH is a Qwen2.5-Omni checkpoint: the full qwen2_5_omni directory or its thinker alone (only the thinker is
# loaded and trained). A video without an audio track is a bad row (data.on_bad_row=error names it; skip drops it).
# Arguments after VIDEO_DIR override these settings.
VIDEO_DIR=${1:?usage: $0 VIDEO_DIR [key=value ...]}
shift
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Omni-3B}
exec bash "$(dirname "$0")/run_video_rl.sh" grpo qwen2_5_omni_3b_grpo "${VIDEO_DIR}" \
    data.use_audio=true \
    "$@"
