"""Rollout throughput, HF generate against vLLM, on the same prompts in one run (CPU or GPU).

Both engines get the same left-padded prompt batch, with the rows' video features precomputed once (MR-SP stage 1's
output, as in training), the same sampling (n samples at temperature 1, up to ``--max-new`` tokens) and the same
weights, on the GPU when there is one (bf16 there by default), else the CPU. Each engine generates once to warm up
(vLLM's first call builds its kernels), then ``--repeats`` timed times; tokens/s counts generated response tokens (up
to and including the stop token). ``--size 3b`` is the step benchmark's model (``workload.py``: Qwen2.5-VL-3B, random
weights, built on the GPU), and ``--frames F --side 448 --prompts 1 --n 8 --max-new 512`` its rollout at F frames.

Run in an environment with vLLM (``make test-vllm`` builds ``.venv-vllm`` on a CPU machine)::

    .venv-vllm/bin/python benchmarks/rollout_engines.py --size tiny mid --out benchmarks/results/rollout_engines_cpu.json
    python benchmarks/rollout_engines.py --size 3b --frames 64 --side 448 --prompts 1 --n 8 --max-new 512   # GPU
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import numpy as np
import torch

from longrl.config.schema import RolloutConfig
from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.models.tiny import save_random_model
from longrl.models.tokenizer import QwenTokenIds, build_tokenizer
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.rollout.vllm import VLLMRollout
from longrl.workers.vision_inputs import VIDEO_EMBEDS
from workload import build_model as build_workload_model

FAMILY = "qwen2_5_vl"
# Text-model sizes: the test suite's tiny model, and a mid-sized one where the matmuls, not the per-step overhead,
# start to dominate on a CPU (head size 64, as in the real Qwen models); "3b" is the workload's model.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {},
    "mid": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 6, "num_attention_heads": 8,
            "num_key_value_heads": 2},
}


def build_model(out_dir: Path, size: str) -> Path:
    """The tiny Qwen2.5-VL (processor, tokenizer) with its text model resized to ``size``, random weights; for "3b"
    the step benchmark's model."""
    if size == "3b":
        return build_workload_model(out_dir, "3b")
    adapter = get_adapter(FAMILY)
    adapter.build_tiny(out_dir, seed=0)
    if SIZES[size]:
        config = adapter.tiny_config(QwenTokenIds.from_tokenizer(build_tokenizer()))
        text = config.text_config
        for key, value in SIZES[size].items():
            setattr(text, key, value)
        text.layer_types = ["full_attention"] * text.num_hidden_layers
        pairs = text.hidden_size // text.num_attention_heads // 2  # mrope's (t, h, w) split of the rotary pairs
        text.rope_parameters["mrope_section"] = [pairs // 4, 3 * pairs // 8, 3 * pairs // 8]
        config.vision_config.out_hidden_size = config.text_config.hidden_size
        token_ids = QwenTokenIds.from_tokenizer(build_tokenizer())
        save_random_model(adapter.model_class, config, token_ids, out_dir, seed=0)
    return out_dir


def make_prompts(model_dir: Path, hf: HFRollout, num_prompts: int, frames: int, side: int
                 ) -> tuple[Batch, tuple[int, ...], int]:
    """``num_prompts`` video questions (``frames`` frames of ``side`` x ``side`` pixels each) with their features
    attached, on the CPU as the actor hands them to the rollout."""
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(num_prompts):
        video = DecodedVideo(f"{index}.mp4", rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8),
                             np.arange(frames) / 2.0, 2.0, frames)
        question = "Which object moves first, and where does it end up? " * (1 + index % 3)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        inputs = adapter.encode(processor, messages, video)
        rows.append({"uid": str(index), "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
                     "question": question, "options": None, "answer": "A", "reasoning": None, "task": "t",
                     "video_path": None, "timestamps": None})
    tokenizer = processor.tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    collated = collate_left_padded(rows, pad)
    with torch.no_grad():
        features = [torch.cat(list(hf.model.get_video_features(
            v["pixel_values_videos"].to(hf.device), v["video_grid_thw"].to(hf.device), return_dict=True).pooler_output)).cpu()
            for v in collated["vision_inputs"]]
    prompts = Batch.from_dict({key: collated[key] for key in TOKEN_KEYS},
                              {"uid": collated["uid"], "vision_inputs": collated["vision_inputs"], VIDEO_EMBEDS: features})
    return prompts, (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad), pad


def time_engine(engine: Any, prompts: Batch, sampling: SamplingParams, repeats: int) -> dict[str, float]:
    engine.generate(prompts, sampling)  # warm-up
    seconds, tokens = [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        out = engine.generate(prompts, sampling.with_overrides({"seed": repeat}))
        seconds.append(time.perf_counter() - start)
        tokens.append(int(out.tensors["response_mask"].sum()))
    return {"seconds": sum(seconds) / repeats, "tokens": sum(tokens) / repeats,
            "tokens_per_s": sum(tokens) / sum(seconds)}


def run(size: str, args: argparse.Namespace) -> dict[str, Any]:
    dtype = torch.float32 if args.dtype == "float32" else torch.bfloat16
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp), size)
        hf = HFRollout(model_dir, dtype=dtype, device="cuda" if torch.cuda.is_available() else "cpu")
        prompts, eos, pad = make_prompts(model_dir, hf, args.prompts, args.frames, args.side)
        sampling = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=args.max_new,
                                  eos_token_ids=eos, pad_token_id=pad, seed=0)
        hf_row = time_engine(hf, prompts, sampling, args.repeats)
        del hf
        gc.collect()
        torch.cuda.empty_cache()  # vLLM starts only where its share of the GPU is free
        rollout = RolloutConfig(name="vllm", enforce_eager=args.enforce_eager)
        max_model_len = prompts.tensors["input_ids"].shape[1] + args.max_new
        engine = VLLMRollout(model_dir, rollout, max_model_len, dtype=dtype, seed=0)
        try:
            vllm_row = time_engine(engine, prompts, sampling, args.repeats)
        finally:
            engine.close()
    prompt_tokens = int(prompts.tensors["attention_mask"].sum())
    return {"size": size, "dtype": args.dtype, "prompts": args.prompts, "n": args.n, "max_new_tokens": args.max_new,
            "frames": args.frames, "side": args.side, "prompt_tokens": prompt_tokens, "hf": hf_row, "vllm": vllm_row,
            "vllm_over_hf": vllm_row["tokens_per_s"] / hf_row["tokens_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", default=["tiny", "mid"], choices=[*SIZES, "3b"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--side", type=int, default=112, help="frame side in pixels (448: the workload's frames)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on a GPU, else float32")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without graph compilation")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    rows = [run(size, args) for size in args.size]
    print(f"{'size':>5} {'prompt tok':>10} {'HF tok/s':>9} {'vLLM tok/s':>10} {'vLLM/HF':>8}")
    for row in rows:
        print(f"{row['size']:>5} {row['prompt_tokens']:>10} {row['hf']['tokens_per_s']:>9.1f} "
              f"{row['vllm']['tokens_per_s']:>10.1f} {row['vllm_over_hf']:>8.2f}")
    if args.out:
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        args.out.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
