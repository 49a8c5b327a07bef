"""Encode a dataset's videos once into the embedding cache, so training reads features instead of decoding videos.

Takes the trainer's config and overrides (same keys, same defaults)::

    python scripts/cache_video_embeds.py data.train_files=... data.val_files=... data.cache_dir=/cache \\
        worker.actor.model.model_path=/models/Qwen2.5-VL-7B-Instruct worker.actor.model.freeze_vision_tower=true
    torchrun --nproc_per_node 8 scripts/cache_video_embeds.py ... worker.actor.ulysses_size=2

Under ``torchrun`` the videos are dealt out over the data-parallel groups and each video's frames over the ranks of
its sequence-parallel group (``worker.actor.ulysses_size``), MR-SP stage 1 exactly as in training. Videos already in
the cache are skipped, so an interrupted run resumes where it stopped (entries are written atomically: an
interruption leaves no partial entry). Prints videos/s and bytes written.
"""

from __future__ import annotations

import math
import os
import sys
import time

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import torch
import torch.distributed as dist
from tqdm import tqdm

from longrl.config.loader import load_config
from longrl.controller.worker import distributed_backend
from longrl.data.dataset import SkippedRow, VideoQADataset
from longrl.embeds.cache import EmbeddingCache, cache_root
from longrl.embeds.store import CachedVideo
from longrl.models.registry import adapter_for_model_dir
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.protocol import TOKEN_KEYS
from longrl.trainer.quickstart import prepare_quickstart_default
from longrl.workers.vision_inputs import without_pixels


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(sys.argv[1:] if argv is None else argv)
    if cache_root(cfg) is None:
        print("config error: set data.cache_dir (where the cache lives)", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend=distributed_backend())
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    world_rank = dist.get_rank() if dist.is_initialized() else 0
    if world_rank == 0:
        for line in prepare_quickstart_default(cfg):
            print(f"generated {line}")
    if dist.is_initialized():
        dist.barrier()
    groups = build_sp_groups(cfg.worker.actor.ulysses_size)
    model_path = cfg.worker.actor.model.model_path
    adapter = adapter_for_model_dir(model_path)
    processor = adapter.load_processor(model_path, cfg.worker.actor.model.trust_remote_code)
    cache = EmbeddingCache.from_config(cfg, adapter)
    files = [f for f in (cfg.data.train_files, cfg.data.val_files) if f]
    datasets = [VideoQADataset(f, cfg.data, cfg.worker.rollout, adapter, processor) for f in files]
    videos: dict[str, tuple[VideoQADataset, int]] = {}
    for dataset in datasets:
        for index, row in enumerate(dataset.rows):
            if row.video is not None:
                videos.setdefault(row.video, (dataset, index))
    # Decided before anyone writes, so every rank agrees on the work (the encoding is collective).
    todo = [path for path in videos if not cache.store.contains(cache.entry(path)[0])]
    if dist.is_initialized():
        dist.barrier()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = adapter.load_model(model_path, dtype=dtype, trust_remote_code=cfg.worker.actor.model.trust_remote_code)
    model = model.to(device).eval()
    encoder = adapter.video_encoder(model)
    rounds = math.ceil(len(todo) / groups.dp_size)
    written, encoded, start = 0, 0, time.perf_counter()
    for round_index in tqdm(range(rounds), desc="caching video embeddings", disable=world_rank != 0):
        position = round_index * groups.dp_size + groups.dp_rank
        path = todo[position] if position < len(todo) else None
        sample = None
        if path is not None:
            dataset, index = videos[path]
            sample = dataset[index]
            if isinstance(sample, SkippedRow):
                print(f"skipped {path}: {sample.reason}", file=sys.stderr)
                sample = None
        vision = {k: v for k, v in sample["inputs"].items() if k not in TOKEN_KEYS} if sample is not None else None
        with torch.no_grad():
            features = encode_row_videos(encoder, [vision] if vision else [], groups, device,
                                         cfg.worker.rollout.num_chunk_seq)
        if vision is None:
            continue
        encoded += 1
        if groups.sp_rank == 0:
            written += cache.store.put(*cache.entry(path),
                                       CachedVideo.from_row(features[0], without_pixels(vision, adapter.input_keys),
                                                            sample["timestamps"]))
    totals = torch.tensor([encoded if groups.sp_rank == 0 else 0, written], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(totals)
    seconds = time.perf_counter() - start
    if world_rank == 0:
        count, size = int(totals[0]), int(totals[1])
        print(f"cached {count} videos ({len(videos) - len(todo)} already cached) in {seconds:.1f} s: "
              f"{count / max(seconds, 1e-9):.2f} videos/s, {size} bytes written to {cache.store.root}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
