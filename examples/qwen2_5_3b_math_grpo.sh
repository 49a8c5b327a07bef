#!/usr/bin/env bash
# GRPO on math word problems with Qwen2.5-3B-Instruct (text rows).
#   MODEL_PATH=/models/Qwen2.5-3B-Instruct bash examples/qwen2_5_3b_math_grpo.sh [key=value ...]   (knobs: run_math_rl.sh)
exec bash "$(dirname "$0")/run_math_rl.sh" grpo qwen2_5_3b_math_grpo "$@"
