"""MR-SP benchmark: one GRPO step on the DESIGN.md workload, timed per phase, variants side by side in one run.

Workload: Qwen2.5-VL-3B architecture (random weights: cost does not depend on their values), bf16 compute, one video
of F frames at 448x448 (128 visual tokens per frame), one question, n = 8 rollouts of up to 512 tokens, one GRPO step
(rollout, old log-probs, reference log-probs, update) through the real ``HybridWorker`` (FSDP actor and reference,
HF-generate rollout), vision tower frozen as in Long-RL's recipes.

Comparisons (``--compare``):

* ``reuse`` (1 GPU): **re-encode**, what a plain HF/TRL loop does — the rollout engine encodes the prompt's video
  once, then every later forward runs the vision tower on its own row (n rows in the old, reference and update
  passes) — against **encode-once**, MR-SP stage 1: one encoding at rollout, its features reused by every pass.
* ``sp`` (2+ GPUs): encode-once with ``ulysses_size = 1`` on one GPU against ``ulysses_size = G`` on ``G`` GPUs.
* ``cache`` (1 GPU): encode-once against **cached**: the video's features read from the embedding store (what the
  data layer does on a cache hit), so the step runs no vision tower at all.
* ``packing`` (1 GPU): encode-once with padded rows (twice, in two processes: the run-to-run noise floor) against
  ``worker.actor.padding_free=true`` (packed rows through MR-SP's segment attention, the code path SP uses, with
  no SP group).
* ``shared`` (1 GPU): encode-once with one row per micro-batch (n full prompt+response sequences per pass) against
  ``worker.actor.shared_prefix=true`` with the group in one micro-batch (the prompt once, n response branches).

Every row also reports the largest difference of its old log-probs (over response tokens) from its baseline's:
variants run the same seeds, so the rollouts match and the log-prob passes are compared directly.

Run on the GPU machine from the repo root::

    python benchmarks/mrsp.py --compare reuse --frames 64 256 --out $OUT/mrsp.json

It prints a table (frames, seconds per phase, peak GPU memory, speedup of the step) and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import numpy as np
import torch
import torch.multiprocessing as mp

from longrl.config.loader import load_config
from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.models.tokenizer import QwenTokenIds, build_tokenizer
from longrl.embeds.store import CachedVideo, EmbeddingStore
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.workers.vision_inputs import VIDEO_EMBEDS, without_pixels

FAMILY = "qwen2_5_vl"
FRAME_SIDE = 448
N_ROLLOUTS = 8
RESPONSE_LENGTH = 512
PHASES = ("rollout", "old_log_prob", "ref_log_prob", "update")
CACHE_KEY = "bench"

# Qwen2.5-VL-3B-Instruct's architecture.
TEXT_3B = {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
           "num_key_value_heads": 2, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "hidden_act": "silu",
           "vocab_size": 151936, "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                                     "mrope_section": [16, 24, 24]}}
VISION_3B = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
             "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
             "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2}


def build_model(out_dir: Path) -> Path:
    """A Qwen2.5-VL-3B-shaped checkpoint with random bf16 weights and longrl's local processor."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    get_adapter(FAMILY).build_tiny(out_dir)  # processor, tokenizer, generation config
    for weights in out_dir.glob("*.safetensors"):
        weights.unlink()
    ids = QwenTokenIds.from_tokenizer(build_tokenizer())
    text = {**TEXT_3B, "bos_token_id": ids.pad_token_id, "eos_token_id": ids.eos_token_id, "pad_token_id": ids.pad_token_id}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=VISION_3B, **ids.vision_token_kwargs(),
                              tie_word_embeddings=True, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    return out_dir


def make_prompts(model_dir: Path, frames: int) -> Batch:
    """One question about one random video of ``frames`` frames at 448x448."""
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    pixels = np.random.default_rng(frames).integers(0, 256, (frames, FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
    video = DecodedVideo("bench.mp4", pixels, np.arange(frames) / 2.0, 2.0, frames)
    messages = [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": "What happens in this video? Think step by step."}]}]
    inputs = adapter.encode(processor, messages, video)
    sample = {"uid": "q0", "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()}, "question": "",
              "options": None, "answer": "A", "reasoning": None, "task": "bench", "video_path": None, "timestamps": None}
    collated = collate_left_padded([sample], processor.tokenizer.pad_token_id)
    return Batch.from_dict({k: collated[k] for k in TOKEN_KEYS},
                           {"uid": collated["uid"], "vision_inputs": collated["vision_inputs"]})


def worker_config(model_dir: Path, gpus: int, ulysses: int, *extra: str):
    return load_config([
        f"worker.actor.model.model_path={model_dir}", f"trainer.n_gpus_per_node={gpus}",
        f"worker.actor.ulysses_size={ulysses}", f"worker.rollout.n={N_ROLLOUTS}",
        f"data.max_response_length={RESPONSE_LENGTH}", "data.max_prompt_length=400000", "data.rollout_batch_size=1",
        "worker.actor.global_batch_size=1", "worker.actor.micro_batch_size_per_device_for_update=1",
        "worker.actor.micro_batch_size_per_device_for_experience=1", "worker.actor.model.freeze_vision_tower=true",
        "worker.actor.model.enable_gradient_checkpointing=true", "worker.ref.fsdp.torch_dtype=bf16",
        "worker.rollout.temperature=1.0", "algorithm.use_kl_loss=true", "data.val_files=null",
        # lr 0: the update costs the same, and the weights stay put, so every step of every variant scores the
        # same model and their log-probs can be compared.
        "worker.actor.optim.lr=0", *extra])


@contextmanager
def phase(name: str, record: dict[str, Any]) -> Iterator[None]:
    """Wall time of the block (GPU work included) and the step's peak GPU memory so far (0 on a CPU)."""
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    if gpu:
        torch.cuda.synchronize()
    record[f"{name}_s"] = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0
    record["peak_gib"] = max(record.get("peak_gib", 0.0), peak)


def fill_cache(worker: Any, prompts: Batch, store: EmbeddingStore) -> None:
    """Encode ``prompts``' video once (outside any timing) into ``store``, as scripts/cache_video_embeds.py does."""
    features = worker.actor.with_video_features(prompts).non_tensors[VIDEO_EMBEDS][0]
    row = prompts.non_tensors["vision_inputs"][0]
    store.put(CACHE_KEY, {"frames": row["video_grid_thw"].tolist()}, CachedVideo.from_row(features, row))
    worker.actor.read_encoded_slices()  # not part of any measured step


def from_cache(prompts: Batch, store: EmbeddingStore) -> Batch:
    """The prompts as the data layer hands them over on a cache hit: features read from disk, no pixels."""
    row = prompts.non_tensors["vision_inputs"][0]
    cached = store.get(CACHE_KEY, {"frames": row["video_grid_thw"].tolist()})
    return prompts.with_non_tensors(vision_inputs=[without_pixels(row)], **{VIDEO_EMBEDS: [cached.features]})


def grpo_step(worker: Any, prompts: Batch, variant: str, store: EmbeddingStore | None = None
              ) -> tuple[dict[str, Any], torch.Tensor]:
    """One step's phases and the old log-probs (0 off the response); advantages are random (their values do not
    change the cost). ``variant``: ``re-encode``, ``encode-once`` or ``cached`` (features read from ``store``, whose
    disk read is billed to the rollout phase)."""
    record: dict[str, Any] = {}
    with phase("rollout", record):
        if variant == "re-encode":
            rollout = worker.rollout.generate(prompts, worker._sampling(0, validate=False))
            rollout = rollout.without_non_tensors("uid")  # no key to share an encoding by: one per row
        else:
            rollout = worker.generate(from_cache(prompts, store) if variant == "cached" else prompts, step=0)
    with phase("old_log_prob", record):
        batch = rollout.union(worker.compute_log_prob(rollout))
    with phase("ref_log_prob", record):
        batch = batch.union(worker.compute_ref_log_prob(batch))
    mask = batch.tensors["response_mask"].float()
    advantages = torch.randn(mask.shape[0], 1).expand_as(mask) * mask
    with phase("update", record):
        metrics = worker.update_actor(batch.union(Batch.from_dict({"advantages": advantages})))
    record["total_s"] = sum(record[f"{p}_s"] for p in PHASES)
    record["vision_tower_calls"] = metrics["mrsp/vision_tower_calls"]
    record["prompt_tokens"] = int(prompts.tensors["attention_mask"].sum())
    return record, batch.tensors["old_log_probs"] * mask


def _rank_main(rank: int, world: int, port: int, model_dir: str, ulysses: int, frames: list[int], variants: list[str],
               result_file: str, extra: tuple[str, ...], tag: str | None) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES=str(rank))
    from longrl.workers.hybrid import HybridWorker

    worker = HybridWorker(worker_config(Path(model_dir), world, ulysses, *extra), total_steps=1000)
    # Warm-up at every measured size (an untimed step), so kernel selection and allocator growth for these shapes are
    # not billed to whichever variant happens to run first: measured, that first run at 256 frames costs ~20 s more.
    for count in frames:
        grpo_step(worker, make_prompts(Path(model_dir), count), "encode-once")
    store = EmbeddingStore(tempfile.mkdtemp(prefix="mrsp_bench_cache_"))
    rows = []
    for count in frames:
        prompts = make_prompts(Path(model_dir), count)
        if "cached" in variants:
            fill_cache(worker, prompts, store)
        for name in variants:
            measured, log_probs = grpo_step(worker, prompts, name, store)
            variant = name + (f"+{tag}" if tag else "".join(f"+{override.split('.')[-1]}" for override in extra))
            record = {"frames": count, "gpus": world, "ulysses_size": ulysses, "variant": variant, **measured}
            rows.append(record)
            if rank == 0:
                print(json.dumps(record), flush=True)
                Path(result_file).write_text(json.dumps(rows))
                torch.save(log_probs.cpu(), f"{result_file}.{variant}.{count}.pt")


def run_variant(model_dir: Path, gpus: int, ulysses: int, frames: list[int], variants: list[str],
                *extra: str, tag: str | None = None) -> list[dict]:
    """The rows of one worker configuration, each with its old log-probs attached (``_log_probs``); ``tag`` names the
    configuration in the variant column (default: the overridden keys)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = handle.name
    mp.start_processes(_rank_main, args=(gpus, port, str(model_dir), ulysses, frames, variants, result_file, extra, tag),
                       nprocs=gpus, join=True, start_method="spawn")
    rows = json.loads(Path(result_file).read_text())
    for row in rows:
        row["_log_probs"] = torch.load(f"{result_file}.{row['variant']}.{row['frames']}.pt")
    return rows


def _mean_response_diff(row: dict, base: dict) -> float:
    on_response = (row["_log_probs"] != 0) | (base["_log_probs"] != 0)
    return (row["_log_probs"] - base["_log_probs"]).abs()[on_response].mean().item()


def table(rows: list[dict], baseline_of: Any) -> str:
    head = (f"{'variant':<34}{'frames':>7}{'tokens':>8}" + "".join(f"{p + ' s':>15}" for p in PHASES)
            + f"{'step s':>9}{'peak GiB':>10}{'tower calls':>12}{'speedup':>9}{'max|dlogp|':>12}{'mean|dlogp|':>12}")
    lines = [head, "-" * len(head)]
    for row in rows:
        base = baseline_of(row)
        label = f"{row['variant']} sp={row['ulysses_size']} g={row['gpus']}"
        lines.append(f"{label:<34}{row['frames']:>7}{row['prompt_tokens']:>8}"
                     + "".join(f"{row[p + '_s']:>15.2f}" for p in PHASES)
                     + f"{row['total_s']:>9.2f}{row['peak_gib']:>10.1f}{row['vision_tower_calls']:>12.0f}"
                     + f"{base['total_s'] / row['total_s']:>8.2f}x"
                     + f"{(row['_log_probs'] - base['_log_probs']).abs().max().item():>12.2e}"
                     + f"{_mean_response_diff(row, base):>12.2e}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=("reuse", "sp", "packing", "cache", "shared"), default="reuse")
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--gpus", type=int, default=2, help="GPUs of the SP variant (--compare sp)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    model_dir = Path(tempfile.mkdtemp(prefix="mrsp_bench_")) / "qwen2_5_vl_3b_random"
    try:
        build_model(model_dir)
        if args.compare == "reuse":
            rows = run_variant(model_dir, 1, 1, args.frames, ["re-encode", "encode-once"])
            report = table(rows, lambda r: next(b for b in rows if b["frames"] == r["frames"]
                                                and b["variant"] == "re-encode"))
        elif args.compare == "cache":
            rows = run_variant(model_dir, 1, 1, args.frames, ["encode-once", "cached"])
            report = table(rows, lambda r: next(b for b in rows if b["frames"] == r["frames"]
                                                and b["variant"] == "encode-once"))
        elif args.compare == "packing":
            # The padded configuration twice (two processes): the run-to-run noise floor of the log-prob columns.
            rows = (run_variant(model_dir, 1, 1, args.frames, ["encode-once"])
                    + run_variant(model_dir, 1, 1, args.frames, ["encode-once"], "worker.actor.padding_free=false")
                    + run_variant(model_dir, 1, 1, args.frames, ["encode-once"], "worker.actor.padding_free=true"))
            report = table(rows, lambda r: next(b for b in rows if b["frames"] == r["frames"]
                                                and b["variant"] == "encode-once"))
        elif args.compare == "shared":
            group = (f"worker.actor.micro_batch_size_per_device_for_update={N_ROLLOUTS}",
                     f"worker.actor.micro_batch_size_per_device_for_experience={N_ROLLOUTS}")
            rows = (run_variant(model_dir, 1, 1, args.frames, ["encode-once"])
                    + run_variant(model_dir, 1, 1, args.frames, ["encode-once"], "worker.actor.shared_prefix=true",
                                  *group, tag="shared_prefix"))
            report = table(rows, lambda r: next(b for b in rows if b["frames"] == r["frames"]
                                                and b["variant"] == "encode-once"))
        else:
            rows = (run_variant(model_dir, 1, 1, args.frames, ["encode-once"])
                    + run_variant(model_dir, args.gpus, args.gpus, args.frames, ["encode-once"]))
            report = table(rows, lambda r: next(b for b in rows if b["frames"] == r["frames"] and b["gpus"] == 1))
    finally:
        shutil.rmtree(model_dir.parent, ignore_errors=True)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plain = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
        args.out.write_text(json.dumps({"rows": plain, "table": report}, indent=1))


if __name__ == "__main__":
    main()
