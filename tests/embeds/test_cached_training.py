"""Training from the embedding cache: same prompts, same log-probs, no vision tower; bad entries recomputed.

The cache is filled by ``scripts/cache_video_embeds.py`` (run in process here); the worker is the real
``HybridWorker`` on one CPU rank.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from longrl.config.loader import load_config
from longrl.controller.worker_group import free_rendezvous_port
from longrl.data.dataset import VideoQADataset, collate_left_padded, prompts_to_batch
from longrl.data.synthetic import generate_dataset
from longrl.embeds.cache import EmbeddingCache
from longrl.models import get_adapter
from longrl.protocol import TOKEN_KEYS

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("cache_video_embeds", REPO / "scripts/cache_video_embeds.py")
cache_script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cache_script)

pytestmark = pytest.mark.slow


def _overrides(root: Path, model_dir: Path, cache: bool) -> list[str]:
    return [f"data.train_files={root / 'data/train.jsonl'}", "data.val_files=null", "data.video_dir=null",
            f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}", f"worker.actor.model.model_path={model_dir}",
            "worker.actor.model.freeze_vision_tower=true", "worker.rollout.num_video_frames=6", "worker.rollout.n=2",
            "data.max_response_length=6", "data.rollout_batch_size=4", "worker.actor.global_batch_size=4",
            *([f"data.cache_dir={root / 'cache'}"] if cache else [])]


def _batch(cfg, adapter, processor, cache):
    dataset = VideoQADataset(cfg.data.train_files, cfg.data, cfg.worker.rollout, adapter, processor, cache)
    samples = [dataset[i] for i in range(4)]
    return prompts_to_batch(collate_left_padded(samples, processor.tokenizer.pad_token_id))


def test_cached_features_give_the_live_log_probs_without_the_tower(tiny_model_dir, tmp_path, monkeypatch, caplog):
    from longrl.workers.hybrid import HybridWorker

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_rendezvous_port()))
    model_dir = tiny_model_dir("qwen2_5_vl")
    generate_dataset(tmp_path / "data", num=6, frames=8, seed=3)
    assert cache_script.main(_overrides(tmp_path, model_dir, cache=True)) == 0
    cfg = load_config(_overrides(tmp_path, model_dir, cache=True))
    adapter = get_adapter("qwen2_5_vl")
    processor = adapter.load_processor(model_dir)
    cache = EmbeddingCache.from_config(cfg, adapter)
    entries = sorted(cache.store.root.glob("*/*.safetensors"))
    assert len(entries) == 4  # 6 videos, 4 of them in the train split

    cached = _batch(cfg, adapter, processor, cache)
    live = _batch(cfg, adapter, processor, None)
    for key in TOKEN_KEYS:  # the prompt built from the cached grid is the decoded video's prompt
        assert torch.equal(cached.tensors[key], live.tensors[key])
    assert all("pixel_values_videos" not in row for row in cached.non_tensors["vision_inputs"])

    worker = HybridWorker(cfg, total_steps=10)
    try:
        out_cached = worker.generate(cached, step=0)
        assert worker.actor.read_encoded_slices() == []  # the tower never ran
        out_live = worker.generate(live, step=0)
        assert sum(worker.actor.read_encoded_slices()) > 0
        assert torch.equal(out_cached.tensors["responses"], out_live.tensors["responses"])
        scores_cached = worker.compute_log_prob(out_cached).tensors["old_log_probs"]
        scores_live = worker.compute_log_prob(out_live).tensors["old_log_probs"]
        torch.testing.assert_close(scores_cached, scores_live, atol=1e-5, rtol=0)

        # A damaged entry: reported, its video decoded and encoded live, and the entry written back whole.
        damaged = entries[0]
        damaged.write_bytes(damaged.read_bytes()[:100])
        with caplog.at_level(logging.WARNING, logger="longrl.embeds.store"):
            mixed = _batch(cfg, adapter, processor, cache)
        assert f"embedding cache: {damaged} is unreadable" in caplog.text
        assert sum(row is None for row in mixed.non_tensors["video_embeds"]) == 1
        out_mixed = worker.generate(mixed, step=0)
        assert len(worker.actor.read_encoded_slices()) == 1  # only the damaged row's video
        assert torch.equal(out_mixed.tensors["responses"], out_live.tensors["responses"])
        again = _batch(cfg, adapter, processor, cache)
        assert all(row is not None for row in again.non_tensors["video_embeds"])
    finally:
        dist.destroy_process_group()
