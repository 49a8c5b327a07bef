"""MR-SP benchmark: one GRPO step on the DESIGN.md workload, timed per phase, variants side by side in one run.

Workload: DESIGN.md's (see ``workload.py``), one video of F frames at 448x448 (128 visual tokens per frame).

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
import tempfile
from pathlib import Path
from typing import Any

import torch

from longrl.embeds.store import CachedVideo, EmbeddingStore
from longrl.protocol import Batch
from longrl.workers.vision_inputs import VIDEO_EMBEDS, without_pixels
from workload import (CACHE_KEY, N_ROLLOUTS, PHASES, grpo_step, make_prompts, model_directory, set_rank_environment,
                      spawn, worker_config)


def fill_cache(worker: Any, prompts: Batch, store: EmbeddingStore) -> None:
    """Encode ``prompts``' video once (outside any timing) into ``store``, as scripts/cache_video_embeds.py does."""
    features = worker.actor.with_video_features(prompts).non_tensors[VIDEO_EMBEDS][0]
    row = prompts.non_tensors["vision_inputs"][0]
    store.put(CACHE_KEY, {"frames": row["video_grid_thw"].tolist()}, CachedVideo.from_row(features, without_pixels(row, worker.adapter.input_keys)))
    worker.actor.read_encoded_slices()  # not part of any measured step


def _rank_main(rank: int, world: int, port: int, model_dir: str, ulysses: int, frames: list[int], variants: list[str],
               result_file: str, extra: tuple[str, ...], tag: str | None) -> None:
    set_rank_environment(rank, world, port)
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
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = handle.name
    spawn(_rank_main, gpus, str(model_dir), ulysses, frames, variants, result_file, extra, tag)
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
    with model_directory("3b") as model_dir:
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
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plain = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
        args.out.write_text(json.dumps({"rows": plain, "table": report}, indent=1))


if __name__ == "__main__":
    main()
