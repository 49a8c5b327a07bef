"""scripts/cache_video_embeds.py resumes after being killed, and the quickstart task trains the same from the cache."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrl.config.loader import load_config
from longrl.controller.worker_group import free_rendezvous_port
from longrl.data.synthetic import generate_dataset
from longrl.embeds.cache import EmbeddingCache
from longrl.models import get_adapter
from longrl.trainer.main import main as train

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts/cache_video_embeds.py"


def _run_script(overrides: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(SCRIPT), *overrides], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_and_leaves_only_whole_entries(tiny_model_dir, tmp_path: Path):
    generate_dataset(tmp_path / "data", num=24, frames=16, seed=4)
    overrides = [f"data.train_files={tmp_path / 'data/train.jsonl'}", f"data.val_files={tmp_path / 'data/val.jsonl'}",
                 "data.video_dir=null", f"worker.actor.model.model_path={tiny_model_dir('qwen2_5_vl')}",
                 "worker.actor.model.freeze_vision_tower=true", "worker.rollout.num_video_frames=16",
                 f"data.cache_dir={tmp_path / 'cache'}", f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
    cache_dir = tmp_path / "cache"
    first = _run_script(overrides, tmp_path)
    deadline = time.monotonic() + 300
    while not list(cache_dir.glob("*/*.safetensors")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the first run should be killed mid-way"
    cfg = load_config(overrides)
    cache = EmbeddingCache.from_config(cfg, get_adapter("qwen2_5_vl"))
    videos = sorted({row["video"] for split in ("train", "val")
                     for row in map(json.loads, (tmp_path / f"data/{split}.jsonl").read_text().splitlines())})
    done_before = [path for path in videos if cache.store.contains(cache.entry(tmp_path / "data" / path)[0])]
    assert 1 <= len(done_before) < len(videos)
    second = _run_script(overrides, tmp_path)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    match = re.search(r"cached (\d+) videos \((\d+) already cached\) in [\d.]+ s: [\d.]+ videos/s, (\d+) bytes", out)
    assert match, out
    assert (int(match[1]), int(match[2])) == (len(videos) - len(done_before), len(done_before))
    for path in videos:  # every entry whole and verified
        assert cache.load(cache.entry(tmp_path / "data" / path)) is not None


def test_two_ranks_split_each_videos_frames_and_write_the_single_process_entries(tiny_model_dir, tmp_path: Path):
    """torchrun, 2 CPU ranks in one SP group (each video's temporal slices split over them): the same entries,
    feature for feature, as one process."""
    generate_dataset(tmp_path / "data", num=6, frames=8, seed=5)
    base = [f"data.train_files={tmp_path / 'data/train.jsonl'}", f"data.val_files={tmp_path / 'data/val.jsonl'}",
            "data.video_dir=null", f"worker.actor.model.model_path={tiny_model_dir('qwen2_5_vl')}",
            "worker.actor.model.freeze_vision_tower=true", "worker.rollout.num_video_frames=8",
            f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
    single = _run_script([*base, f"data.cache_dir={tmp_path / 'one'}"], tmp_path)
    assert single.wait(timeout=600) == 0, single.stdout.read()
    port = free_rendezvous_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_port", str(port), str(SCRIPT), *base, f"data.cache_dir={tmp_path / 'two'}",
                            "worker.actor.ulysses_size=2", "trainer.n_gpus_per_node=2"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    assert re.search(r"cached 5 videos \(0 already cached\)", ranks.stdout), ranks.stdout
    one = sorted((tmp_path / "one").glob("*/*.safetensors"))
    assert len(one) == 5
    for entry in one:
        twin = tmp_path / "two" / entry.relative_to(tmp_path / "one")
        assert torch.equal(load_file(str(entry))["features"], load_file(str(twin))["features"])


def _first_step(tmp_path: Path, experiment: str) -> dict:
    lines = (tmp_path / f"outputs/logs/longrl/{experiment}/metrics.jsonl").read_text().splitlines()
    return next(record for record in map(json.loads, lines) if "actor/pg_loss" in record)


def test_quickstart_first_step_is_the_same_from_the_cache(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = [f"quickstart.root={tmp_path / 'quickstart'}", "quickstart.num_videos=8", "quickstart.frames=8",
             "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.num_video_frames=4",
             "data.max_response_length=8", "trainer.max_steps=1", "trainer.logger=[file]", "trainer.save_freq=-1",
             "trainer.val_before_train=false", "worker.actor.model.freeze_vision_tower=true",
             f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}",
             # the reward in a thread: a reward process would import longrl again in each of the two runs
             "worker.reward.num_workers=0", "worker.reward.timeout_s=null"]
    cached = [*small, f"data.cache_dir={tmp_path / 'cache'}"]
    assert train([*small, "trainer.experiment_name=live"]) == 0
    script = _run_script(cached, tmp_path)
    out, _ = script.communicate(timeout=600)
    assert script.returncode == 0 and "cached " in out, out
    assert train([*cached, "trainer.experiment_name=cached"]) == 0
    live, from_cache = _first_step(tmp_path, "live"), _first_step(tmp_path, "cached")
    assert from_cache["mrsp/vision_tower_calls"] == 0 and live["mrsp/vision_tower_calls"] > 0
    compared = [key for key in live if not key.startswith(("perf/", "mrsp/")) and "timing_s/" not in key]
    assert len(compared) > 20 and set(compared) <= set(from_cache)
    for key in compared:
        assert math.isclose(from_cache[key], live[key], rel_tol=1e-5, abs_tol=1e-6), (key, from_cache[key], live[key])
