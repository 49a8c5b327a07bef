#!/usr/bin/env bash
# GRPO on image questions (one or several images per row, EasyR1's `images` key) with Qwen2.5-VL-3B.
#   bash examples/qwen2_5_vl_3b_image_grpo.sh IMAGE_DIR [key=value ...]   (environment knobs: run_video_rl.sh)
# IMAGE_DIR holds the images the rows' relative paths point into; MR-SP encodes each image as one slice. Arguments
# after IMAGE_DIR override these settings.
IMAGE_DIR=${1:?usage: $0 IMAGE_DIR [key=value ...]}
shift
export TRAIN_FILES=${TRAIN_FILES:-hiyouga/geometry3k@train} VAL_FILES=${VAL_FILES:-hiyouga/geometry3k@test}
exec bash "$(dirname "$0")/run_video_rl.sh" grpo qwen2_5_vl_3b_image_grpo "${IMAGE_DIR}" \
    data.image_key=images \
    data.max_prompt_length=4096 \
    "$@"
