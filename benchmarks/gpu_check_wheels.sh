#!/usr/bin/env bash
# Fill .whl-tf/ (git-ignored) with the newest transformers 5.x and the libraries it needs newer than the GPU image's
# (Python 3.12 wheels), for benchmarks/gpu_check.sh's second run. On the device machine, in the same call:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site-tf .whl-tf/*.whl
#   PYTHONPATH=/tmp/site-tf:/tmp/site:$PWD bash benchmarks/gpu_check.sh $OUT/newest
set -euo pipefail
out=${WHL_DIR:-.whl-tf}
mkdir -p "$out"
ex=$(git rev-parse --git-path info/exclude)
grep -qx "/${out#./}/" "$ex" 2>/dev/null || echo "/${out#./}/" >> "$ex"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$out" \
  "transformers>=5.17,<6" "huggingface-hub>=2.4,<3" "tokenizers>=0.23.1,<0.24" "safetensors>=0.8" \
  "kernels>=0.19.1,<0.20" hf-xet httpx2 httpcore2 truststore "idna>=3.18" "anyio>=4.10" regex typer shellingham \
  "click>=8.4.2"
du -sh "$out"; ls "$out"
