#!/usr/bin/env bash
# Install longrl's vLLM model-file overrides into the vLLM of the current Python, idempotently, printing each file it
# replaces (the original is kept once as <file>.orig). Overrides are files under vllm_overrides/ laid out as inside
# the vllm package (e.g. vllm_overrides/model_executor/models/qwen2_5_omni_thinker.py); LONGRL_VLLM_OVERRIDES points
# elsewhere. Today longrl needs none: the Qwen-VL families run on vLLM's own model files, so this is a no-op.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python}
overrides=${LONGRL_VLLM_OVERRIDES:-vllm_overrides}
if [ ! -d "$overrides" ] || [ -z "$(find "$overrides" -type f -print -quit)" ]; then
  echo "vllm_replace.sh: nothing to replace (no files under $overrides/); the installed vLLM is used as it is"
  exit 0
fi
target=$("$python" -c 'import os, vllm; print(os.path.dirname(vllm.__file__))')
find "$overrides" -type f | sort | while read -r source; do
  destination="$target/${source#"$overrides"/}"
  if [ -f "$destination" ] && cmp -s "$source" "$destination"; then
    echo "unchanged: $destination"
    continue
  fi
  if [ -f "$destination" ] && [ ! -f "$destination.orig" ]; then
    cp "$destination" "$destination.orig"
  fi
  mkdir -p "$(dirname "$destination")"
  cp "$source" "$destination"
  echo "replaced: $destination (from $source)"
done
