#!/usr/bin/env bash
# GPU check: does longrl's GPU path run on this machine's torch and transformers, offline?
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Three parts, each logged to OUT_DIR/<part>.log and timed; the script stops at the first failure and prints the end
# of its log. Nothing may reach the network (HF_HUB_OFFLINE=1; hub kernels stay off, longrl's default).
#   pipeline  the quickstart (`python -m longrl.sft.pipeline`: tiny Qwen2.5-VL, evaluate / CoT-SFT / GRPO on the
#             synthetic long-video task) on the GPU, under its own project name so a second run starts afresh
#   step      one GRPO step of the benchmark workload (Qwen2.5-VL-3B architecture, random bf16 weights) at F=16
#   decode    the HF rollout's time per decoding step at 64 frames
# Run it from the repository root with longrl importable (PYTHONPATH=$PWD on the device machine). To check another
# transformers, put it first on PYTHONPATH and run again into another OUT_DIR.
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 - <<'EOF' | tee "$out/versions.txt"
import longrl, torch, torchvision, transformers, os
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, "
      f"USE_HUB_KERNELS={os.environ['USE_HUB_KERNELS']}")
EOF
tag=$(python3 -c "import transformers; print(transformers.__version__.replace('.', '_'))")

part() {
  local name=$1 start=$SECONDS
  shift
  if "$@" > "$out/$name.log" 2>&1; then
    echo "$name: ok in $((SECONDS - start)) s"
  else
    echo "$name: FAILED (exit $?) after $((SECONDS - start)) s; end of $out/$name.log:"
    tail -n 40 "$out/$name.log"
    exit 1
  fi
}

part pipeline python3 -m longrl.sft.pipeline "quickstart.root=$out/quickstart" "trainer.project_name=gpu_check_$tag"
grep "test accuracy by stage" "$out/pipeline.log"
part step python3 benchmarks/step.py --warmup-frames 8 --job longrl@1:16 --out "$out/step.json"
tail -n 4 "$out/step.log"
part decode python3 benchmarks/decode_step.py --frames 64
tail -n 3 "$out/decode.log"
echo "gpu check passed"
