#!/usr/bin/env bash
# GRPO on math word problems with Qwen3-4B (text rows; EasyR1's math recipe layout).
#   MODEL_PATH=/models/Qwen3-4B bash examples/qwen3_4b_math_grpo.sh [key=value ...]   (knobs: run_math_rl.sh)
exec bash "$(dirname "$0")/run_math_rl.sh" grpo qwen3_4b_math_grpo "$@"
