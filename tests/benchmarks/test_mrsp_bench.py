"""The MR-SP benchmark's two variants on a tiny model (CPU): the baseline really re-encodes, encode-once does not."""

import importlib.util
import sys
from pathlib import Path

import pytest

from longrl.controller.worker_group import free_rendezvous_port

# Loaded by path under its own name: benchmarks/ is not a package, and "mrsp" is taken by tests/mrsp. Its sibling
# modules (workload.py) are imported as the script imports them, from its own folder.
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.append(str(BENCHMARKS))  # after tests/: benchmarks/mrsp.py must not shadow the tests' mrsp package
_SPEC = importlib.util.spec_from_file_location("benchmark_mrsp", BENCHMARKS / "mrsp.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

pytestmark = pytest.mark.slow


def test_variants_differ_only_in_vision_tower_work(tiny_model_dir, monkeypatch, tmp_path):
    from longrl.workers.hybrid import HybridWorker

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_rendezvous_port()))
    model_dir = tiny_model_dir("qwen2_5_vl")
    cfg = bench.worker_config(model_dir, 1, 1, "data.max_response_length=4", "worker.rollout.n=3")
    worker = HybridWorker(cfg, total_steps=10)
    try:
        prompts = bench.make_prompts(model_dir, 6)  # 6 frames of 448x448: 3 temporal slices of 256 tokens
        baseline, baseline_log_probs = bench.grpo_step(worker, prompts, "re-encode")
        once, once_log_probs = bench.grpo_step(worker, prompts, "encode-once")
        store = bench.EmbeddingStore(tmp_path / "cache")
        bench.fill_cache(worker, prompts, store)
        cached, cached_log_probs = bench.grpo_step(worker, prompts, "cached", store)
    finally:
        import torch.distributed as dist
        dist.destroy_process_group()
    assert baseline["prompt_tokens"] == once["prompt_tokens"] > 3 * 256
    # Re-encode: the old, reference and update passes each encode the 3 rows (the rollout copy's tower is not
    # counted: it belongs to the rollout engine). Encode-once: one actor-tower call at rollout, then none.
    assert baseline["vision_tower_calls"] == 3 and once["vision_tower_calls"] == 1 and cached["vision_tower_calls"] == 0
    assert set(bench.PHASES) <= {key[:-2] for key in once if key.endswith("_s")}
    # Same seeds: the same responses, scored alike by both variants (the features come from two towers with the
    # same weights, the rollout copy's and the actor's).
    assert (baseline_log_probs - once_log_probs).abs().max() < 1e-5
    assert (cached_log_probs - once_log_probs).abs().max() < 1e-5
